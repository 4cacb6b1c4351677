// Package deploy_test checks the example Kubernetes manifests: each one
// decodes strictly into the Kubernetes API types (an unknown or misspelled
// field is an error), and what they say about khproxy agrees with khproxy
// itself: its configuration's variables and their validation, the admin
// listener's paths, the signing listener's address.
//
// It lives in its own module so that k8s.io/api stays out of khproxy's.
package deploy_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"khproxy/admin"
	"khproxy/config"
)

// sidecarName is the name of khproxy's container in the manifests.
const sidecarName = "khproxy"

// podMonitor and prometheusRule are the Prometheus operator's own types
// (monitoring.coreos.com/v1, module
// github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring), so
// that strict decoding rejects what the operator's CRDs would.
type (
	podMonitor     = monitoringv1.PodMonitor
	prometheusRule = monitoringv1.PrometheusRule
)

// manifests are the decoded documents of every YAML file under kubernetes/.
type manifests struct {
	deployments     []*appsv1.Deployment
	podMonitors     []*podMonitor
	services        []*corev1.Service
	networkPolicies []*networkingv1.NetworkPolicy
	budgets         []*policyv1.PodDisruptionBudget
	rules           []*prometheusRule
}

// load decodes every document of every .yaml file under dir, strictly.
func load(t *testing.T, dir string) manifests {
	t.Helper()
	var m manifests
	files := 0
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, doc := range documents(data) {
			if err := m.decode(doc); err != nil {
				return fmt.Errorf("%s, document %d: %w", path, i+1, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 || len(m.deployments) == 0 {
		t.Fatalf("no manifests (or no Deployment) under %s", dir)
	}
	return m
}

// documents splits a YAML stream at its "---" lines, dropping empty ones.
func documents(data []byte) [][]byte {
	var docs [][]byte
	for _, doc := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// decode decodes one document into the type its apiVersion and kind name.
func (m *manifests) decode(doc []byte) error {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return err
	}
	switch meta.APIVersion + " " + meta.Kind {
	case "apps/v1 Deployment":
		d := &appsv1.Deployment{}
		if err := decodeStrict(doc, d); err != nil {
			return err
		}
		m.deployments = append(m.deployments, d)
	case "monitoring.coreos.com/v1 PodMonitor":
		p := &podMonitor{}
		if err := decodeStrict(doc, p); err != nil {
			return err
		}
		m.podMonitors = append(m.podMonitors, p)
	case "monitoring.coreos.com/v1 PrometheusRule":
		r := &prometheusRule{}
		if err := decodeStrict(doc, r); err != nil {
			return err
		}
		m.rules = append(m.rules, r)
	case "v1 Service":
		s := &corev1.Service{}
		if err := decodeStrict(doc, s); err != nil {
			return err
		}
		m.services = append(m.services, s)
	case "networking.k8s.io/v1 NetworkPolicy":
		n := &networkingv1.NetworkPolicy{}
		if err := decodeStrict(doc, n); err != nil {
			return err
		}
		m.networkPolicies = append(m.networkPolicies, n)
	case "policy/v1 PodDisruptionBudget":
		b := &policyv1.PodDisruptionBudget{}
		if err := decodeStrict(doc, b); err != nil {
			return err
		}
		m.budgets = append(m.budgets, b)
	default:
		return fmt.Errorf("no test knows %s %s: add its type to decode", meta.APIVersion, meta.Kind)
	}
	return nil
}

// decodeStrict decodes doc into v, failing on unknown fields, duplicate
// fields and wrong types (yaml.UnmarshalStrict) and also on fields whose
// name differs only in case from a known one, which encoding/json (under
// sigs.k8s.io/yaml) would accept but the API server rejects: every key of
// the document must survive a round trip through v.
func decodeStrict(doc []byte, v any) error {
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return err
	}
	var in, out any
	if err := yaml.Unmarshal(doc, &in); err != nil {
		return err
	}
	back, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(back, &out); err != nil {
		return err
	}
	return sameKeys("", in, out)
}

// sameKeys reports the first key of in (a decoded document) that out (its
// round trip) lacks.
func sameKeys(path string, in, out any) error {
	switch in := in.(type) {
	case map[string]any:
		o, _ := out.(map[string]any)
		for k, v := range in {
			ov, ok := o[k]
			if !ok {
				return fmt.Errorf("unknown field %s.%s (misspelled, or in the wrong case?)", path, k)
			}
			if err := sameKeys(path+"."+k, v, ov); err != nil {
				return err
			}
		}
	case []any:
		o, _ := out.([]any)
		for i, v := range in {
			if i >= len(o) {
				return fmt.Errorf("%s[%d] lost in decoding", path, i)
			}
			if err := sameKeys(fmt.Sprintf("%s[%d]", path, i), v, o[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestStrictDecoding shows that the decoding the other tests rely on
// rejects what the API server would (silently or not).
func TestStrictDecoding(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"unknown field", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n"},
		{"misplaced field", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n        - name: x\n          terminationGracePeriodSeconds: 5\n"},
		{"field in the wrong case", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      initContainers:\n        - name: x\n          restartpolicy: Always\n"},
		{"duplicate field", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: 2\n  replicas: 3\n"},
		{"wrong type", "apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: two\n"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\n"},
		{"PodMonitor unknown field", "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nspec:\n  podMetricsEndpoints:\n    - port: admin\n      shceme: http\n"},
		{"PrometheusRule unknown field", "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nspec:\n  groups:\n    - name: x\n      rules:\n        - alert: A\n          expr: up == 0\n          four: 5m\n"},
		{"NetworkPolicy unknown field", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nspec:\n  podselector: {}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m manifests
			if err := m.decode([]byte(tt.doc)); err == nil {
				t.Error("decoded without error")
			}
		})
	}
}

func TestManifests(t *testing.T) {
	m := load(t, "kubernetes")
	for _, d := range m.deployments {
		t.Run(d.Name, func(t *testing.T) { checkDeployment(t, d, m.podMonitors) })
	}
}

// khproxyContainer returns khproxy's container in pod: a native sidecar
// among the init containers, or a container of khproxy's own Deployment
// (sidecar false); ok is false when there is none.
func khproxyContainer(pod corev1.PodSpec) (c corev1.Container, sidecar, ok bool) {
	if i := slices.IndexFunc(pod.InitContainers, func(c corev1.Container) bool { return c.Name == sidecarName }); i >= 0 {
		return pod.InitContainers[i], true, true
	}
	if i := slices.IndexFunc(pod.Containers, func(c corev1.Container) bool { return c.Name == sidecarName }); i >= 0 {
		return pod.Containers[i], false, true
	}
	return corev1.Container{}, false, false
}

// checkDeployment checks one Deployment with khproxy, as a native sidecar
// of an app or in a Deployment of its own.
func checkDeployment(t *testing.T, d *appsv1.Deployment, monitors []*podMonitor) {
	pod := d.Spec.Template.Spec
	kh, sidecar, ok := khproxyContainer(pod)
	if !ok {
		t.Fatalf("no container %q", sidecarName)
	}
	if sidecar && (kh.RestartPolicy == nil || *kh.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
		t.Error("khproxy is not a native sidecar: its init container needs restartPolicy: Always")
	}
	cfg := loadConfig(t, kh)
	t.Run("image", func(t *testing.T) { checkImage(t, kh) })

	t.Run("env names", func(t *testing.T) {
		known := map[string]bool{}
		for _, v := range config.Vars() {
			known[v.Name] = true
		}
		for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "KH_") && !known[e.Name] {
					t.Errorf("container %s sets %s, which khproxy does not read", c.Name, e.Name)
				}
			}
		}
	})
	t.Run("credentials from a Secret", func(t *testing.T) { checkCredentials(t, pod, kh) })
	t.Run("probes", func(t *testing.T) { checkProbes(t, kh, cfg) })
	t.Run("metrics", func(t *testing.T) { checkScraping(t, d, kh, cfg, monitors) })
	t.Run("security", func(t *testing.T) { checkSecurity(t, pod) })
	t.Run("resources", func(t *testing.T) { checkResources(t, kh, cfg) })
	t.Run("shutdown fits the grace period", func(t *testing.T) {
		grace := int64(30) // Kubernetes' default
		if pod.TerminationGracePeriodSeconds != nil {
			grace = *pod.TerminationGracePeriodSeconds
		}
		if total := cfg.ShutdownDelay + cfg.ShutdownTimeout; total >= time.Duration(grace)*time.Second {
			t.Errorf("KH_SHUTDOWN_DELAY + KH_SHUTDOWN_TIMEOUT = %s, not inside terminationGracePeriodSeconds %d", total, grace)
		}
	})
	t.Run("the app calls khproxy", func(t *testing.T) {
		if !sidecar {
			t.Skip("khproxy's own Deployment: apps call its Service")
		}
		want := "http://" + cfg.Listen
		found := false
		for _, c := range pod.Containers {
			for _, e := range c.Env {
				found = found || e.Value == want
			}
		}
		if !found {
			t.Errorf("no app container has an env value %s (KH_LISTEN is %s)", want, cfg.Listen)
		}
	})
}

// loadConfig runs khproxy's own config.Load over the container's env, so
// that every value in the manifest is one khproxy accepts. KH_KEY_FILE,
// which Load reads, points to a stand-in file.
func loadConfig(t *testing.T, c corev1.Container) config.Config {
	t.Helper()
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var environ []string
	for _, e := range c.Env {
		switch {
		case !strings.HasPrefix(e.Name, "KH_"):
		case e.ValueFrom != nil:
			t.Errorf("%s comes from %v: the test cannot check its value", e.Name, e.ValueFrom)
		case e.Name == "KH_KEY_FILE":
			environ = append(environ, e.Name+"="+keyFile)
		default:
			environ = append(environ, e.Name+"="+e.Value)
		}
	}
	cfg, _, err := config.Load(environ)
	if err != nil {
		t.Fatalf("khproxy refuses the manifest's configuration:\n%v", err)
	}
	return cfg
}

// envOf returns the container's variable name, nil when unset.
func envOf(c corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// checkCredentials: key and secret are files from a Secret volume that only
// khproxy mounts, never literal values.
func checkCredentials(t *testing.T, pod corev1.PodSpec, kh corev1.Container) {
	for _, literal := range []string{"KH_KEY", "KH_SECRET"} {
		if envOf(kh, literal) != nil {
			t.Errorf("%s is set in the manifest: use %s_FILE from a Secret", literal, literal)
		}
	}
	for _, name := range []string{"KH_KEY_FILE", "KH_SECRET_FILE"} {
		e := envOf(kh, name)
		if e == nil {
			t.Errorf("%s is not set", name)
			continue
		}
		vol, rel := mountedVolume(pod, kh, e.Value)
		switch {
		case vol == nil:
			t.Errorf("%s=%s is not on a mounted volume", name, e.Value)
		case vol.Secret == nil:
			t.Errorf("%s=%s is on volume %s, which is not a Secret", name, e.Value, vol.Name)
		case len(vol.Secret.Items) > 0 && !slices.ContainsFunc(vol.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == rel }):
			t.Errorf("%s=%s: Secret volume %s has no item with path %s", name, e.Value, vol.Name, rel)
		}
	}
	creds := mountName(kh, "KH_SECRET_FILE", pod)
	for _, c := range pod.Containers {
		if c.Name == sidecarName {
			continue
		}
		for _, vm := range c.VolumeMounts {
			if vm.Name == creds {
				t.Errorf("container %s mounts khproxy's credentials", c.Name)
			}
		}
	}
}

// mountedVolume returns the volume that holds path in c, with path relative
// to the mount; a subPath mount does not count: it never sees a rotation.
func mountedVolume(pod corev1.PodSpec, c corev1.Container, path string) (*corev1.Volume, string) {
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if ok && vm.SubPath == "" {
			return volume(pod, vm.Name), rel
		}
	}
	return nil, ""
}

// mountName is the name of the volume holding the file in c's variable.
func mountName(c corev1.Container, variable string, pod corev1.PodSpec) string {
	if e := envOf(c, variable); e != nil {
		if v, _ := mountedVolume(pod, c, e.Value); v != nil {
			return v.Name
		}
	}
	return ""
}

func volume(pod corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

// adminPort is the port of KH_ADMIN_LISTEN.
func adminPort(t *testing.T, cfg config.Config) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(cfg.AdminListen)
	if err != nil {
		t.Fatalf("KH_ADMIN_LISTEN %q: %v (the manifest must turn the admin listener on)", cfg.AdminListen, err)
	}
	port, err := strconv.ParseInt(p, 10, 32)
	if err != nil || port == 0 {
		t.Fatalf("KH_ADMIN_LISTEN %q: a fixed port is needed for probes", cfg.AdminListen)
	}
	return int32(port)
}

// portNumber resolves a probe's or monitor's port (a number or the name of
// one of c's ports).
func portNumber(c corev1.Container, port string) int32 {
	if n, err := strconv.ParseInt(port, 10, 32); err == nil {
		return int32(n)
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return p.ContainerPort
		}
	}
	return -1
}

// checkProbes: three probes, on the admin listener's port and paths.
func checkProbes(t *testing.T, kh corev1.Container, cfg config.Config) {
	port := adminPort(t, cfg)
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		paths []string
	}{
		{"startup", kh.StartupProbe, []string{admin.PathHealthz, admin.PathReadyz}},
		{"liveness", kh.LivenessProbe, []string{admin.PathHealthz}},
		{"readiness", kh.ReadinessProbe, []string{admin.PathReadyz}},
	} {
		switch {
		case p.probe == nil || p.probe.HTTPGet == nil:
			t.Errorf("%s probe: want an httpGet probe", p.name)
		case !slices.Contains(admin.Paths(), p.probe.HTTPGet.Path) || !slices.Contains(p.paths, p.probe.HTTPGet.Path):
			t.Errorf("%s probe path %s, want one of %v", p.name, p.probe.HTTPGet.Path, p.paths)
		case portNumber(kh, p.probe.HTTPGet.Port.String()) != port:
			t.Errorf("%s probe port %s is not KH_ADMIN_LISTEN's %d", p.name, p.probe.HTTPGet.Port.String(), port)
		}
	}
}

// checkScraping: scrape annotations and any PodMonitor point at /metrics on
// the admin port.
func checkScraping(t *testing.T, d *appsv1.Deployment, kh corev1.Container, cfg config.Config, monitors []*podMonitor) {
	port := adminPort(t, cfg)
	ann := d.Spec.Template.Annotations
	scraped := false
	if ann["prometheus.io/scrape"] != "" {
		scraped = true
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != admin.PathMetrics || ann["prometheus.io/port"] != strconv.Itoa(int(port)) {
			t.Errorf("scrape annotations %v, want scrape true, path %s, port %d", ann, admin.PathMetrics, port)
		}
	}
	for _, pm := range monitors {
		if !selects(pm.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			continue
		}
		scraped = true
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			epPort := ""
			if ep.Port != nil {
				epPort = *ep.Port
			}
			if ep.Path != admin.PathMetrics || portNumber(kh, epPort) != port {
				t.Errorf("PodMonitor %s scrapes port %s path %s, want the admin port %d and %s", pm.Name, epPort, ep.Path, port, admin.PathMetrics)
			}
		}
	}
	if !scraped {
		t.Error("neither scrape annotations nor a PodMonitor selecting the pod")
	}
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkSecurity: the restricted Pod Security Standard and then some, for
// every container.
func checkSecurity(t *testing.T, pod corev1.PodSpec) {
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod: runAsNonRoot is not true")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod: seccompProfile is not RuntimeDefault")
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", c.Name)
			continue
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem is not true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation is not false", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities do not drop ALL (and add none)", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", c.Name)
		}
	}
}

// checkResources: requests and limits, a memory limit that holds the body
// budget, and GOMEMLIMIT from the memory limit.
func checkResources(t *testing.T, kh corev1.Container, cfg config.Config) {
	r := kh.Resources
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := r.Requests[res]; !ok {
			t.Errorf("no %s request", res)
		}
	}
	limit, ok := r.Limits[corev1.ResourceMemory]
	if !ok {
		t.Fatal("no memory limit")
	}
	if req := r.Requests[corev1.ResourceMemory]; req.Cmp(limit) > 0 {
		t.Errorf("memory request %s exceeds the limit %s", req.String(), limit.String())
	}
	// The sizing rule of docs/security.md: with Go's default GC settings, peak RSS is
	// about twice the body budget plus some 30 MiB.
	if need := 2*cfg.MaxInflightBytes + 32<<20; limit.Value() < need {
		t.Errorf("memory limit %s is below twice KH_MAX_INFLIGHT_BYTES (%d) plus 32Mi: %d bytes (docs/security.md: Memory, slow clients and overload)",
			limit.String(), cfg.MaxInflightBytes, need)
	}
	// Unset, khproxy sets the soft limit to 90% of the cgroup's limit
	// itself. A resourceFieldRef could only give 100%, which leaves the
	// garbage collector no room before the OOM killer.
	if e := envOf(kh, "GOMEMLIMIT"); e != nil {
		t.Errorf("GOMEMLIMIT is set (%v): leave it unset, khproxy sets 90%% of the container's memory limit", e)
	}
}

// checkImage: khproxy's image names a version (a tag other than latest, or
// a digest).
func checkImage(t *testing.T, c corev1.Container) {
	name, digest, _ := strings.Cut(c.Image, "@")
	tag := ""
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		tag = name[i+1:]
	}
	if (tag == "" || tag == "latest") && digest == "" {
		t.Errorf("image %q: name a version, not latest", c.Image)
	}
}
