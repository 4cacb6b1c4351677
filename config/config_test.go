package config_test

import (
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"khproxy/config"
	"khproxy/internal/testutil"
)

const goodKey = "kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

func environ(kv ...string) []string {
	base := map[string]string{"KH_KEY": goodKey, "KH_SECRET": "s3cr3t-value"}
	for i := 0; i+1 < len(kv); i += 2 {
		base[kv[i]] = kv[i+1]
	}
	var out []string
	for k, v := range base {
		if v != "<unset>" {
			out = append(out, k+"="+v)
		}
	}
	return out
}

func TestLoadDefaults(t *testing.T) {
	c, warns, err := config.Load(environ())
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("warnings = %v, want none", warns)
	}
	want := config.Config{
		Key:               goodKey,
		Secret:            "s3cr3t-value",
		Upstream:          &url.URL{Scheme: "https", Host: "www.kernelhost.com", Path: "/cp/kh_reseller_api"},
		Listen:            "127.0.0.1:8080",
		MaxBodyBytes:      1 << 20,
		UpstreamTimeout:   30 * time.Second,
		IdempotentRoutes:  testutil.Patterns(t, "POST /v1/orders", "POST /v1/services/{id}/actions"),
		RetryMax:          3,
		RetryBudget:       30 * time.Second,
		IdempotencyWindow: 10 * time.Minute,
		SignedPath:        config.SignedPathV1,
		Safety: config.Safety{
			MaxInflightBytes:    2 << 20,
			MaxInflightWait:     5 * time.Second,
			ReadTimeout:         30 * time.Second,
			MaxConns:            512,
			UpstreamIdleTimeout: 60 * time.Second,
		},
		RateLimiting: config.RateLimiting{
			RateLimit: config.Rate{Count: 60, Per: time.Minute},
			RateBurst: 20,
			RateWait:  30 * time.Second,
		},
		Logging: config.Logging{LogLevel: slog.LevelInfo, LogFormat: "auto"},
		Ops:     config.Ops{AdminListen: ":9090", ShutdownDelay: 5 * time.Second, ShutdownTimeout: 20 * time.Second, UpstreamCheckInterval: 30 * time.Second},
		Webhook: config.Webhook{WebhookSignatureHeader: "KH-Webhook-Signature", WebhookTolerance: 5 * time.Minute, WebhookForwardTimeout: 10 * time.Second, WebhookMaxInflightBytes: 1 << 20},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", c, want)
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"missing key", environ("KH_KEY", "<unset>"), "KH_KEY"},
		{"empty key", environ("KH_KEY", ""), "KH_KEY"},
		{"key with space", environ("KH_KEY", "kh_live_A B"), "KH_KEY"},
		{"no secret", environ("KH_SECRET", "<unset>"), "KH_SECRET"},
		{"both secrets", environ("KH_SECRET_FILE", "/x"), "KH_SECRET_FILE"},
		{"upstream not absolute", environ("KH_UPSTREAM", "/cp/api"), "KH_UPSTREAM"},
		{"upstream ftp", environ("KH_UPSTREAM", "ftp://x/"), "KH_UPSTREAM"},
		{"upstream with query", environ("KH_UPSTREAM", "https://x/?a=b"), "KH_UPSTREAM"},
		{"upstream with user info", environ("KH_UPSTREAM", "https://u:s3cr3t@x/"), "KH_UPSTREAM"},
		{"upstream unparsable", environ("KH_UPSTREAM", "https://u:s3cr3t@x:port/"), "KH_UPSTREAM"},
		{"listen without port", environ("KH_LISTEN", "127.0.0.1"), "KH_LISTEN"},
		{"body not a number", environ("KH_MAX_BODY_BYTES", "10MB"), "KH_MAX_BODY_BYTES"},
		{"body zero", environ("KH_MAX_BODY_BYTES", "0"), "KH_MAX_BODY_BYTES"},
		{"timeout not a duration", environ("KH_UPSTREAM_TIMEOUT", "30"), "KH_UPSTREAM_TIMEOUT"},
		{"timeout negative", environ("KH_UPSTREAM_TIMEOUT", "-1s"), "KH_UPSTREAM_TIMEOUT"},
		{"route without method", environ("KH_IDEMPOTENT_ROUTES", "/v1/orders"), "KH_IDEMPOTENT_ROUTES"},
		{"route lowercase method", environ("KH_IDEMPOTENT_ROUTES", "post /v1/orders"), "KH_IDEMPOTENT_ROUTES"},
		{"route with an empty segment", environ("KH_IDEMPOTENT_ROUTES", "POST /v1//orders"), "KH_IDEMPOTENT_ROUTES"},
		{"route with a trailing slash", environ("KH_IDEMPOTENT_ROUTES", "POST /v1/orders/"), "KH_IDEMPOTENT_ROUTES"},
		{"route with an escape", environ("KH_IDEMPOTENT_ROUTES", "POST /v1/%6Frders"), "KH_IDEMPOTENT_ROUTES"},
		{"route with a query", environ("KH_IDEMPOTENT_ROUTES", "POST /v1/orders?x=1"), "KH_IDEMPOTENT_ROUTES"},
		{"retry max negative", environ("KH_RETRY_MAX", "-1"), "KH_RETRY_MAX"},
		{"retry budget zero", environ("KH_RETRY_BUDGET", "0s"), "KH_RETRY_BUDGET"},
		{"window bad", environ("KH_IDEMPOTENCY_WINDOW", "soon"), "KH_IDEMPOTENCY_WINDOW"},
		{"log level", environ("KH_LOG_LEVEL", "verbose"), "KH_LOG_LEVEL"},
		{"log level offset", environ("KH_LOG_LEVEL", "info+2"), "KH_LOG_LEVEL"},
		{"log format", environ("KH_LOG_FORMAT", "xml"), "KH_LOG_FORMAT"},
		{"signed path unknown", environ("KH_SIGNED_PATH", "prefix"), "KH_SIGNED_PATH"},
		{"signed path uppercase", environ("KH_SIGNED_PATH", "FULL"), "KH_SIGNED_PATH"},
		{"signed path empty", environ("KH_SIGNED_PATH", ""), "KH_SIGNED_PATH"},
		{"webhook listen set but empty", webhookEnv("KH_WEBHOOK_LISTEN", ""), "KH_WEBHOOK_LISTEN"},
		{"webhook listen without port", webhookEnv("KH_WEBHOOK_LISTEN", "0.0.0.0"), "KH_WEBHOOK_LISTEN"},
		{"webhook listen on KH_LISTEN's port", webhookEnv("KH_LISTEN", "127.0.0.1:8080", "KH_WEBHOOK_LISTEN", ":8080"), "KH_WEBHOOK_LISTEN"},
		{"webhook listen on KH_ADMIN_LISTEN's port", webhookEnv("KH_WEBHOOK_LISTEN", ":9090"), "KH_WEBHOOK_LISTEN"},
		{"webhook no secret", webhookEnv("KH_WEBHOOK_SECRET", "<unset>"), "KH_WEBHOOK_SECRET"},
		{"webhook both secrets", webhookEnv("KH_WEBHOOK_SECRET_FILE", "/x"), "KH_WEBHOOK_SECRET_FILE"},
		{"webhook no forward", webhookEnv("KH_WEBHOOK_FORWARD", "<unset>"), "KH_WEBHOOK_FORWARD"},
		{"webhook forward relative", webhookEnv("KH_WEBHOOK_FORWARD", "/hooks"), "KH_WEBHOOK_FORWARD"},
		{"webhook forward ftp", webhookEnv("KH_WEBHOOK_FORWARD", "ftp://app/hooks"), "KH_WEBHOOK_FORWARD"},
		{"webhook forward with user info", webhookEnv("KH_WEBHOOK_FORWARD", "http://u:s3cr3t@app/hooks"), "KH_WEBHOOK_FORWARD"},
		{"webhook forward unparsable", webhookEnv("KH_WEBHOOK_FORWARD", "http://app:port/"), "KH_WEBHOOK_FORWARD"},
		{"webhook header with space", webhookEnv("KH_WEBHOOK_SIGNATURE_HEADER", "Stripe Signature"), "KH_WEBHOOK_SIGNATURE_HEADER"},
		{"webhook header with colon", webhookEnv("KH_WEBHOOK_SIGNATURE_HEADER", "Stripe-Signature:"), "KH_WEBHOOK_SIGNATURE_HEADER"},
		{"webhook header non-ASCII", webhookEnv("KH_WEBHOOK_SIGNATURE_HEADER", "Signatür"), "KH_WEBHOOK_SIGNATURE_HEADER"},
		{"webhook tolerance not a duration", webhookEnv("KH_WEBHOOK_TOLERANCE", "300"), "KH_WEBHOOK_TOLERANCE"},
		{"webhook tolerance zero", webhookEnv("KH_WEBHOOK_TOLERANCE", "0s"), "KH_WEBHOOK_TOLERANCE"},
		{"webhook tolerance negative", webhookEnv("KH_WEBHOOK_TOLERANCE", "-5m"), "KH_WEBHOOK_TOLERANCE"},
		{"webhook forward timeout zero", webhookEnv("KH_WEBHOOK_FORWARD_TIMEOUT", "0s"), "KH_WEBHOOK_FORWARD_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantErrorNaming(t, tt.env, tt.wantVar) })
	}
}

// wantErrorNaming checks that Load(env) fails with an error that names
// wantVar and quotes no secret or password ("s3cr3t" in these tests).
func wantErrorNaming(t *testing.T, env []string, wantVar string) {
	t.Helper()
	_, _, err := config.Load(env)
	if err == nil {
		t.Fatal("Load succeeded, want an error")
	}
	if !strings.Contains(err.Error(), wantVar) {
		t.Errorf("error %q does not name %s", err, wantVar)
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error %q quotes a secret", err)
	}
}

func TestLoadWarnings(t *testing.T) {
	tests := []struct {
		name    string
		env     []string
		wantVar string
	}{
		{"odd key", environ("KH_KEY", "my-key"), "KH_KEY"},
		{"plain http remote", environ("KH_UPSTREAM", "http://api.example.com/cp/kh_reseller_api"), "KH_UPSTREAM"},
		{"listen everywhere", environ("KH_LISTEN", ":8080"), "KH_LISTEN"},
		{"listen on a LAN address", environ("KH_LISTEN", "10.1.2.3:8080"), "KH_LISTEN"},
		{"webhook secret without listener", environ("KH_WEBHOOK_SECRET", "whsec_x"), "KH_WEBHOOK_SECRET"},
		{"webhook forward without listener", environ("KH_WEBHOOK_FORWARD", "http://127.0.0.1:3000/"), "KH_WEBHOOK_FORWARD"},
		{"webhook tolerance over an hour", webhookEnv("KH_WEBHOOK_TOLERANCE", "2h"), "KH_WEBHOOK_TOLERANCE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, warns, err := config.Load(tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if len(warns) != 1 || warns[0].Var != tt.wantVar {
				t.Errorf("warnings = %+v, want one for %s", warns, tt.wantVar)
			}
		})
	}
	for _, ok := range []string{"http://127.0.0.1:9/cp/kh_reseller_api", "http://localhost:9/cp/kh_reseller_api", "http://[::1]:9/cp/kh_reseller_api"} {
		if _, warns, err := config.Load(environ("KH_UPSTREAM", ok)); err != nil || len(warns) != 0 {
			t.Errorf("KH_UPSTREAM=%s: warnings %v, err %v; want neither", ok, warns, err)
		}
	}
}

func TestLoadSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, err := config.Load(environ("KH_SECRET", "<unset>", "KH_SECRET_FILE", path))
	if err != nil {
		t.Fatal(err)
	}
	if c.SecretFile != path || c.Secret != "" {
		// The file is read once, by the signer.
		t.Errorf("SecretFile, Secret = %q, %q; want %q and empty (read by the signer)", c.SecretFile, c.Secret, path)
	}
}

func TestVarsDocumentEveryField(t *testing.T) {
	vars := config.Vars()
	// Config's own fields, plus the embedded groups' fields (Safety,
	// RateLimiting, Logging, Ops, Webhook), minus the group fields
	// themselves.
	if got, want := len(vars), countFields(reflect.TypeFor[config.Config]()); got != want {
		t.Fatalf("Vars has %d entries, Config %d fields", got, want)
	}
	for _, v := range vars {
		if !strings.HasPrefix(v.Name, "KH_") || v.Help == "" {
			t.Errorf("var %+v lacks a KH_ name or help", v)
		}
	}
}

// countFields counts t's fields, descending into embedded structs.
func countFields(t reflect.Type) int {
	n := 0
	for f := range t.Fields() {
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			n += countFields(f.Type)
		} else {
			n++
		}
	}
	return n
}

func TestLoadLogging(t *testing.T) {
	tests := []struct {
		env       []string
		wantLevel slog.Level
		wantErr   string
	}{
		{nil, slog.LevelInfo, ""},
		{[]string{"KH_LOG_LEVEL=warning"}, slog.LevelWarn, ""},
		{[]string{"KH_LOG_LEVEL=DEBUG"}, slog.LevelDebug, ""},
		{[]string{"KH_LOG_LEVEL=verbose"}, 0, "KH_LOG_LEVEL"},
		{[]string{"KH_LOG_FORMAT=xml"}, 0, "KH_LOG_FORMAT"},
		{[]string{"KH_LOG_FORMAT="}, 0, "KH_LOG_FORMAT"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.env, " "), func(t *testing.T) {
			l, err := config.LoadLogging(tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.LogLevel != tt.wantLevel {
				t.Errorf("level = %v, want %v", l.LogLevel, tt.wantLevel)
			}
		})
	}
}

// TestIdempotentRoutesSyntax checks that KH_IDEMPOTENT_ROUTES is read in
// apiroute's {id} syntax, with * still accepted for {id}.
func TestIdempotentRoutesSyntax(t *testing.T) {
	for _, val := range []string{
		"POST /v1/orders, POST /v1/services/{id}/actions",
		"POST /v1/orders,POST /v1/services/*/actions",
	} {
		c, _, err := config.Load(environ("KH_IDEMPOTENT_ROUTES", val))
		if err != nil {
			t.Fatalf("%q: %v", val, err)
		}
		if got, want := c.IdempotentRoutes, testutil.Patterns(t, "POST /v1/orders", "POST /v1/services/{id}/actions"); !reflect.DeepEqual(got, want) {
			t.Errorf("%q: routes = %v, want %v", val, got, want)
		}
	}
}

// Every variable has its entry in the configuration reference, and every
// entry is a variable's: the page is generated from these.
func TestReferenceCoversEveryVariable(t *testing.T) {
	for _, v := range append(config.Vars(), config.DemoVars()...) {
		if v.Doc == "" || v.Help == "" {
			t.Errorf("%s: help %q, reference entry %q; both are needed (config/reference.go)", v.Name, v.Help, v.Doc)
		}
	}
	if got, want := config.ReferenceEntries(), len(config.Vars())+len(config.DemoVars()); got != want {
		t.Errorf("config/reference.go has %d entries for %d variables: remove the ones of variables that are gone", got, want)
	}
}
