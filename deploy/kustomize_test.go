package deploy_test

import (
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"khproxy/admin"
	"khproxy/ratelimit"
)

// kustomizeDir holds the Kustomize components, the standalone overlay and
// the example app.
const kustomizeDir = "kustomize"

// build runs kustomize (the library behind `kubectl kustomize`) on dir and
// decodes every object of its output strictly.
func build(t *testing.T, dir string) manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	var m manifests
	for i, doc := range documents(out) {
		if err := m.decode(doc); err != nil {
			t.Fatalf("kustomize build %s, object %d: %v\n%s", dir, i+1, err, doc)
		}
	}
	return m
}

// kustomizations lists the directories under root with a kustomization
// that is not a component (components are built through those using them).
func kustomizations(t *testing.T, root string) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !regexp.MustCompile(`(?m)^kind: Component$`).Match(data) {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestKustomizeBuilds builds every kustomization and checks each Deployment
// with khproxy, the monitoring objects, and that every component is used.
func TestKustomizeBuilds(t *testing.T) {
	dirs := kustomizations(t, kustomizeDir)
	want := []string{filepath.Join(kustomizeDir, "examples", "app"), filepath.Join(kustomizeDir, "standalone")}
	for _, w := range want {
		if !slices.Contains(dirs, w) {
			t.Errorf("no kustomization in %s (found %v)", w, dirs)
		}
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			m := build(t, dir)
			found := 0
			for _, d := range m.deployments {
				if _, _, ok := khproxyContainer(d.Spec.Template.Spec); ok {
					found++
					t.Run(d.Name, func(t *testing.T) { checkDeployment(t, d, m.podMonitors) })
				}
			}
			if found == 0 {
				t.Error("no Deployment with khproxy")
			}
			t.Run("alerts", func(t *testing.T) { checkRules(t, m) })
			t.Run("network policies", func(t *testing.T) { checkNetworkPolicies(t, m) })
			for _, d := range m.deployments {
				t.Run("security "+d.Name, func(t *testing.T) { checkSecurity(t, d.Spec.Template.Spec) })
			}
		})
	}
}

// TestExampleAppIsOneCompleteSet: the example app's build is the app with
// its native sidecar, the NetworkPolicies, the PodMonitor and the rules.
func TestExampleAppIsOneCompleteSet(t *testing.T) {
	m := build(t, filepath.Join(kustomizeDir, "examples", "app"))
	if len(m.deployments) != 1 || len(m.networkPolicies) != 2 || len(m.podMonitors) != 1 || len(m.rules) != 1 {
		t.Fatalf("got %d Deployments, %d NetworkPolicies, %d PodMonitors, %d PrometheusRules; want 1, 2, 1, 1",
			len(m.deployments), len(m.networkPolicies), len(m.podMonitors), len(m.rules))
	}
	d := m.deployments[0]
	if _, sidecar, ok := khproxyContainer(d.Spec.Template.Spec); !ok || !sidecar {
		t.Error("the app has no native khproxy sidecar")
	}
	if i := slices.IndexFunc(d.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "app" }); i < 0 {
		t.Error("the app's own container is gone")
	}
}

// TestStandalone: khproxy's own Deployment behind a Service, sharing a Redis,
// with a PodDisruptionBudget: the objects point at each other.
func TestStandalone(t *testing.T) {
	m := build(t, filepath.Join(kustomizeDir, "standalone"))
	kh := deployment(t, m, "khproxy")
	redis := deployment(t, m, "khproxy-redis")
	c, sidecar, _ := khproxyContainer(kh.Spec.Template.Spec)
	if sidecar {
		t.Error("standalone khproxy is an init container")
	}
	if kh.Spec.Replicas == nil || *kh.Spec.Replicas < 2 {
		t.Error("fewer than 2 replicas: a PodDisruptionBudget cannot keep one")
	}
	cfg := loadConfig(t, c)

	svc := service(t, m, "khproxy")
	_, listenPort, _ := net.SplitHostPort(cfg.Listen)
	if !selects(svc.Spec.Selector, kh.Spec.Template.Labels) {
		t.Error("Service khproxy does not select khproxy's pods")
	}
	// Callers in other pods name the Service in Host; khproxy answers
	// only the Host names it is told of (421 otherwise).
	for _, name := range []string{svc.Name, svc.Name + "." + svc.Namespace + ".svc", svc.Name + "." + svc.Namespace + ".svc.cluster.local"} {
		if svc.Namespace == "" || !slices.Contains(cfg.AllowedHosts, name) {
			t.Errorf("KH_ALLOWED_HOSTS %q lacks %q (Service %s in namespace %q): callers through the Service get 421", cfg.AllowedHosts, name, svc.Name, svc.Namespace)
		}
	}
	if len(svc.Spec.Ports) != 1 || strconv.Itoa(int(resolve(c, svc.Spec.Ports[0].TargetPort))) != listenPort {
		t.Errorf("Service khproxy's targetPort %v is not KH_LISTEN's port %s", svc.Spec.Ports, listenPort)
	}

	if cfg.RedisURL == nil {
		t.Fatal("KH_REDIS_URL is not set")
	}
	rsvc := service(t, m, cfg.RedisURL.Hostname())
	if !selects(rsvc.Spec.Selector, redis.Spec.Template.Labels) {
		t.Errorf("KH_REDIS_URL's host %s does not select the Redis pods", cfg.RedisURL.Hostname())
	}
	if p := redisPort(cfg.RedisURL); len(rsvc.Spec.Ports) != 1 || strconv.Itoa(int(rsvc.Spec.Ports[0].Port)) != p {
		t.Errorf("KH_REDIS_URL's port %s is not Service %s's %v", p, rsvc.Name, rsvc.Spec.Ports)
	}

	if len(m.budgets) != 1 || !selects(m.budgets[0].Spec.Selector.MatchLabels, kh.Spec.Template.Labels) {
		t.Error("no PodDisruptionBudget selecting khproxy's pods")
	} else if b := m.budgets[0]; b.Spec.MinAvailable == nil || b.Spec.MinAvailable.IntValue() < 1 || b.Spec.MinAvailable.IntValue() >= int(*kh.Spec.Replicas) {
		t.Errorf("PodDisruptionBudget minAvailable %v: want at least 1 and fewer than the replicas, or drains block", b.Spec.MinAvailable)
	}
}

func deployment(t *testing.T, m manifests, name string) *appsv1.Deployment {
	t.Helper()
	return named(t, "Deployment", m.deployments, name)
}

func service(t *testing.T, m manifests, name string) *corev1.Service {
	t.Helper()
	return named(t, "Service", m.services, name)
}

// named returns the object of kind called name among objs, failing t when
// there is none.
func named[T interface{ GetName() string }](t *testing.T, kind string, objs []T, name string) T {
	t.Helper()
	for _, o := range objs {
		if o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	var zero T
	return zero
}

// resolve returns the number of a Service's targetPort in c.
func resolve(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	return portNumber(c, p.StrVal)
}

func redisPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return "6379"
}

// checkNetworkPolicies: every NetworkPolicy selects some Deployment's pods,
// and khproxy's admin port is open to monitoring only.
func checkNetworkPolicies(t *testing.T, m manifests) {
	for _, np := range m.networkPolicies {
		selected := false
		for _, d := range m.deployments {
			selected = selected || selects(np.Spec.PodSelector.MatchLabels, d.Spec.Template.Labels)
		}
		if !selected {
			t.Errorf("NetworkPolicy %s selects no pod of the build", np.Name)
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port == nil || p.Port.IntValue() != 9090 {
					continue
				}
				for _, from := range rule.From {
					if from.NamespaceSelector == nil || from.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
						t.Errorf("NetworkPolicy %s opens the admin port to %v, not the monitoring namespace only", np.Name, from)
					}
				}
			}
		}
	}
	if len(m.networkPolicies) == 0 {
		t.Error("no NetworkPolicy")
	}
}

// metricRef finds the metric names in a PromQL expression.
var metricRef = regexp.MustCompile(`\bkhproxy_[a-z_]+\b`)

// khproxyMetrics returns the names of every metric khproxy registers, from
// its own packages (the webhook receiver's, in package main, aside).
func khproxyMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	if _, err := admin.NewMetrics(reg, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.NewUpstreamUp(reg); err != nil {
		t.Fatal(err)
	}
	if _, err := ratelimit.NewOutage(nil, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := ratelimit.New(ratelimit.Options{Limit: ratelimit.Limit{Every: 1, Burst: 1}, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		names[f.GetName()] = true
	}
	return names
}

// checkRules: the alerts the issue asks for exist, every metric they name
// is one khproxy exports, and each has a severity and a summary.
func checkRules(t *testing.T, m manifests) {
	if len(m.rules) == 0 {
		t.Fatal("no PrometheusRule")
	}
	known := khproxyMetrics(t)
	exprs := map[string]string{}
	for _, r := range m.rules {
		for _, g := range r.Spec.Groups {
			for _, rule := range g.Rules {
				expr := rule.Expr.String()
				exprs[rule.Alert] = expr
				for _, name := range metricRef.FindAllString(expr, -1) {
					base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
					if !known[name] && !known[base] {
						t.Errorf("alert %s uses %s, which khproxy does not export", rule.Alert, name)
					}
				}
				if rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" {
					t.Errorf("alert %s lacks a severity label or a summary", rule.Alert)
				}
				if rule.Alert == "KhproxyUpstreamDown" && (rule.For == nil || string(*rule.For) != "5m") {
					t.Errorf("KhproxyUpstreamDown fires after %v, want 5m", rule.For)
				}
			}
		}
	}
	for alert, want := range map[string]string{
		"KhproxyAPIServerErrors":     `code=~"5.."`,
		"KhproxyAPIRateLimited":      `code="429"`,
		"KhproxyUpstreamDown":        "khproxy_upstream_up == 0",
		"KhproxyRedisDown":           "khproxy_redis_up == 0",
		"KhproxySecretReloadFailing": `khproxy_secret_reloads_total{result="error"}`,
		"KhproxyClockOffset":         "abs(khproxy_clock_offset_seconds) > 60",
	} {
		if !strings.Contains(exprs[alert], want) {
			t.Errorf("alert %s = %q, want it to contain %s", alert, exprs[alert], want)
		}
	}
	if t.Failed() {
		t.Log(fmt.Sprint(exprs))
	}
}
