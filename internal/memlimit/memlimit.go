// Package memlimit sets the Go runtime's soft memory limit from the memory
// limit of the cgroup (a container's) that the process runs in, when
// GOMEMLIMIT does not set one: the garbage collector then works harder as
// the heap nears the limit instead of the kernel killing the process at it.
// The limit is set to Fraction of the cgroup's, leaving room for what the
// runtime does not count (stacks of exiting threads, the binary, page
// cache charged to the cgroup).
//
// It reads cgroup v2 (memory.max) and v1 (memory.limit_in_bytes) through
// an fs.FS rooted at "/", so that tests give it a fake one. It knows
// nothing of khproxy.
package memlimit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction is the share of the cgroup's memory limit that Apply sets as
// the soft limit.
const Fraction = 0.9

// unlimitedV1 is where cgroup v1 reports "no limit" (the largest
// page-aligned int64, 9223372036854771712); anything this large is none.
const unlimitedV1 = 1 << 60

// CgroupLimit returns the memory limit in bytes of the cgroup that
// proc/self/cgroup in root names, cgroup v2 first, then v1; ok is false
// when there is none (no cgroup files, or "max"). Where the process's own
// cgroup directory is not visible (a container that sees its cgroup as the
// mount's root), the mount's root is read instead.
func CgroupLimit(root fs.FS) (limit int64, ok bool, err error) {
	raw, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, false, nil
		}
		return 0, false, err
	}
	v2, v1 := cgroupPaths(raw)
	if v2 != "" {
		if limit, ok, err := read(root, "sys/fs/cgroup", v2, "memory.max"); ok || err != nil {
			return limit, ok, err
		}
	}
	if v1 != "" {
		return read(root, "sys/fs/cgroup/memory", v1, "memory.limit_in_bytes")
	}
	return 0, false, nil
}

// cgroupPaths returns the process's cgroup v2 path ("0::/path") and its v1
// memory controller's path ("N:memory:/path"), "" for each absent.
func cgroupPaths(procSelfCgroup []byte) (v2, v1 string) {
	sc := bufio.NewScanner(bytes.NewReader(procSelfCgroup))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case containsController(parts[1], "memory"):
			v1 = parts[2]
		}
	}
	return v2, v1
}

// containsController reports whether a comma-separated controller list
// holds name.
func containsController(list, name string) bool {
	for c := range strings.SplitSeq(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

// read reads file in mount/cgroupPath, else in mount itself, and parses it.
func read(root fs.FS, mount, cgroupPath, file string) (int64, bool, error) {
	for _, dir := range []string{path.Join(mount, cgroupPath), mount} {
		dir = strings.TrimPrefix(path.Clean("/"+dir), "/")
		raw, err := fs.ReadFile(root, path.Join(dir, file))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, false, err
		}
		return parse(raw, path.Join("/", dir, file))
	}
	return 0, false, nil
}

// parse reads a limit file's content: a byte count, or "max".
func parse(raw []byte, name string) (int64, bool, error) {
	s := strings.TrimSpace(string(raw))
	if s == "max" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false, fmt.Errorf("%s: not a byte count: %q", name, s)
	}
	if n >= unlimitedV1 {
		return 0, false, nil
	}
	return n, true, nil
}

// Result says what Apply did.
type Result struct {
	// Cgroup is the cgroup's memory limit in bytes, 0 when none was found.
	Cgroup int64
	// Set is the soft limit Apply set, 0 when it set none.
	Set int64
	// FromEnv is true when GOMEMLIMIT was set, and Apply left it alone.
	FromEnv bool
}

// Apply sets the runtime's soft memory limit to Fraction of the cgroup's
// memory limit read from root, unless gomemlimit (the GOMEMLIMIT variable,
// which the runtime has applied itself) is set or there is no limit.
func Apply(root fs.FS, gomemlimit string) (Result, error) {
	if gomemlimit != "" {
		return Result{FromEnv: true}, nil
	}
	limit, ok, err := CgroupLimit(root)
	if err != nil || !ok {
		return Result{}, err
	}
	set := int64(float64(limit) * Fraction)
	debug.SetMemoryLimit(set)
	return Result{Cgroup: limit, Set: set}, nil
}
