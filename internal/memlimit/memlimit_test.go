package memlimit

import (
	"math"
	"runtime/debug"
	"testing"
	"testing/fstest"
)

func TestCgroupLimit(t *testing.T) {
	tests := []struct {
		name    string
		files   fstest.MapFS
		want    int64
		wantOK  bool
		wantErr bool
	}{
		{"no proc", fstest.MapFS{}, 0, false, false},
		{"v2 namespaced root", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("268435456\n")},
		}, 268435456, true, false},
		{"v2 own path", fstest.MapFS{
			"proc/self/cgroup": {Data: []byte("0::/kubepods/burstable/pod1/c1\n")},
			"sys/fs/cgroup/kubepods/burstable/pod1/c1/memory.max": {Data: []byte("134217728\n")},
			"sys/fs/cgroup/memory.max":                            {Data: []byte("max\n")},
		}, 134217728, true, false},
		{"v2 own path not visible: the mount's root", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/docker/abc\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("67108864\n")},
		}, 67108864, true, false},
		{"v2 max", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("max\n")},
		}, 0, false, false},
		{"v2 garbage", fstest.MapFS{
			"proc/self/cgroup":         {Data: []byte("0::/\n")},
			"sys/fs/cgroup/memory.max": {Data: []byte("lots\n")},
		}, 0, false, true},
		{"v1", fstest.MapFS{
			"proc/self/cgroup": {Data: []byte("12:cpu,cpuacct:/x\n11:memory:/kubepods/pod1/c1\n0::/\n")},
			"sys/fs/cgroup/memory/kubepods/pod1/c1/memory.limit_in_bytes": {Data: []byte("536870912\n")},
		}, 536870912, true, false},
		{"v1 unlimited", fstest.MapFS{
			"proc/self/cgroup":                           {Data: []byte("11:memory:/\n")},
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")},
		}, 0, false, false},
		{"hybrid: v2 without a memory controller, v1 with", fstest.MapFS{
			"proc/self/cgroup":                           {Data: []byte("11:memory:/\n0::/\n")},
			"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("1073741824\n")},
		}, 1073741824, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := CgroupLimit(tt.files)
			if got != tt.want || ok != tt.wantOK || (err != nil) != tt.wantErr {
				t.Errorf("CgroupLimit = %d, %v, %v; want %d, %v, error %v", got, ok, err, tt.want, tt.wantOK, tt.wantErr)
			}
		})
	}
}

func TestApply(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	root := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("268435456\n")},
	}

	r, err := Apply(root, "100MiB")
	if err != nil || r != (Result{FromEnv: true}) {
		t.Errorf("with GOMEMLIMIT: %+v, %v; want it left alone", r, err)
	}
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("with GOMEMLIMIT the limit changed to %d", got)
	}

	r, err = Apply(root, "")
	want := int64(268435456 * 9 / 10)
	if err != nil || r.Cgroup != 268435456 || r.Set != want {
		t.Errorf("Apply = %+v, %v; want cgroup 268435456, set %d", r, err, want)
	}
	if got := debug.SetMemoryLimit(-1); got != want {
		t.Errorf("runtime limit = %d, want %d", got, want)
	}

	debug.SetMemoryLimit(math.MaxInt64)
	r, err = Apply(fstest.MapFS{}, "")
	if err != nil || r != (Result{}) {
		t.Errorf("without a cgroup: %+v, %v", r, err)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("without a cgroup the limit changed to %d", got)
	}
}
