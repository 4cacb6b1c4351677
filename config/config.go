// Package config reads khproxy's settings from environment variables.
//
// Load is the single entry point: it parses a given environment (never the
// process's own, so tests stay hermetic), applies defaults, and validates each
// value with an error that names the variable. It returns typed values (a
// parsed URL, parsed routes, a slog.Level, durations), so that nothing after
// it parses again. The Vars table, generated from the same struct tags, feeds
// `khproxy -h`.
//
// The secret's content is not judged here: package signer owns that rule and
// reads the secret file, once, when the signer is built.
package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caarlos0/env/v11"
)

// Config is khproxy's whole configuration. Fields are filled by Load; the zero
// value is not a usable configuration. A Config is plain data, safe to share
// once loaded; Upstream and IdempotentRoutes must not be modified.
type Config struct {
	Key        string `env:"KH_KEY" help:"API key id sent as KH-Key (kh_live_ + 32 characters). Set this or KH_KEY_FILE."`
	KeyFile    string `env:"KH_KEY_FILE" help:"File holding the API key id (one trailing newline ignored), e.g. from a mounted Kubernetes secret; read once at start."`
	Secret     string `env:"KH_SECRET" help:"API secret used as the HMAC key. Set this or KH_SECRET_FILE, not both."`
	SecretFile string `env:"KH_SECRET_FILE" help:"File holding the API secret (one trailing newline ignored); read again when it changes, e.g. a rotated Kubernetes secret."`

	Upstream          *url.URL            `env:"KH_UPSTREAM" envDefault:"https://www.kernelhost.com/cp/kh_reseller_api" help:"Base URL of the API, without /v1; a client's /v1/x?q goes to {KH_UPSTREAM}/v1/x?q."`
	UpstreamCAs       []*x509.Certificate `env:"KH_UPSTREAM_CA_FILE" help:"PEM file of CA certificates trusted for an https KH_UPSTREAM besides the system's, e.g. a corporate TLS-inspecting proxy's."`
	Listen            string              `env:"KH_LISTEN" envDefault:"127.0.0.1:8080" help:"Address to listen on (host:port), or unix:/path for a Unix socket (mode 0660). Anyone who can reach it can spend the account's money: keep it on loopback."`
	MaxBodyBytes      int64               `env:"KH_MAX_BODY_BYTES" envDefault:"1048576" help:"Largest request body accepted, in bytes; larger ones get 413 and are not sent. Raise KH_MAX_INFLIGHT_BYTES with it."`
	UpstreamTimeout   time.Duration       `env:"KH_UPSTREAM_TIMEOUT" envDefault:"30s" help:"How long one upstream attempt may take to return response headers."`
	IdempotentRoutes  []Route             `env:"KH_IDEMPOTENT_ROUTES" envDefault:"POST /v1/orders,POST /v1/services/*/actions" help:"Comma-separated \"METHOD /path\" routes that get an automatic Idempotency-Key; * matches one path segment."`
	RetryMax          int                 `env:"KH_RETRY_MAX" envDefault:"3" help:"Most upstream retries after the first attempt (0 disables retries). Waiting out a 409 request_in_progress is not counted: only KH_RETRY_BUDGET bounds it."`
	RetryBudget       time.Duration       `env:"KH_RETRY_BUDGET" envDefault:"30s" help:"Most time spent on one request across all its attempts and backoff waits."`
	IdempotencyWindow time.Duration       `env:"KH_IDEMPOTENCY_WINDOW" envDefault:"10m" help:"How long an unanswered automatic Idempotency-Key is kept for a caller's identical retry."`

	Safety
	RateLimiting
	Logging
	Ops
	Webhook
}

// Logging is the part of the configuration that every subcommand reads,
// the emulator's included (see LoadLogging).
type Logging struct {
	LogLevel  slog.Level `env:"KH_LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error."`
	LogFormat string     `env:"KH_LOG_FORMAT" envDefault:"auto" help:"auto (coloured text on a terminal, JSON otherwise), text or json."`
}

// Route is one KH_IDEMPOTENT_ROUTES entry: an uppercase method and a path
// starting with "/", in which a "*" segment stands for one path segment.
type Route struct {
	Method string
	Path   string
}

// String returns the route as "METHOD /path".
func (r Route) String() string { return r.Method + " " + r.Path }

// UnmarshalText parses "METHOD /path"; surrounding spaces are ignored.
func (r *Route) UnmarshalText(text []byte) error {
	route := string(text)
	method, path, ok := strings.Cut(strings.TrimSpace(route), " ")
	path = strings.TrimSpace(path)
	if !ok || method == "" || path == "" {
		return fmt.Errorf("route %q: want \"METHOD /path\", like \"POST /v1/orders\"", route)
	}
	if strings.ContainsFunc(method, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		return fmt.Errorf("route %q: method must be an uppercase HTTP method", route)
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " ?#") {
		return fmt.Errorf("route %q: path must start with / and hold no spaces, query or fragment", route)
	}
	*r = Route{Method: method, Path: path}
	return nil
}

// Var describes one environment variable for help output.
type Var struct {
	Name    string
	Default string
	Help    string
}

// Vars lists every variable Load reads, in declaration order, with its default
// and meaning. It is derived from Config's struct tags, the single source.
func Vars() []Var {
	var vars []Var
	for _, f := range fields(reflect.TypeFor[Config]()) {
		vars = append(vars, Var{Name: f.Tag.Get("env"), Default: f.Tag.Get("envDefault"), Help: f.Tag.Get("help")})
	}
	return vars
}

// fields lists t's fields that carry an env tag, descending into embedded
// groups such as Logging.
func fields(t reflect.Type) []reflect.StructField {
	var out []reflect.StructField
	for f := range t.Fields() {
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, fields(f.Type)...)
			continue
		}
		if f.Tag.Get("env") != "" {
			out = append(out, f)
		}
	}
	return out
}

// Warning is a condition worth telling the operator about at start-up that
// does not stop khproxy.
type Warning struct {
	Var     string
	Message string
}

// KeyPattern is the documented KH-Key format (spec §1.1).
var KeyPattern = regexp.MustCompile(`^kh_live_[A-Z0-9]{32}$`)

// Load parses environ (KEY=value strings, as os.Environ returns) into a Config
// and validates it. It returns every problem found, joined, each naming its
// variable, plus the warnings for a configuration that is valid but risky.
func Load(environ []string) (Config, []Warning, error) {
	var c Config
	if err := parse(&c, environ); err != nil {
		return Config{}, nil, err
	}
	var v validation
	c.loadKeyFile(&v)
	c.validateCredentials(&v)
	c.validateNetwork(&v)
	c.validateUpstreamPath(&v)
	c.validateLimits(&v)
	c.validateSafety(&v)
	c.RateLimiting.validate(&v)
	c.Logging.validate(&v)
	c.Ops.validate(&v, c.Listen)
	c.Webhook.validate(&v, c.Listen, c.AdminListen)
	c.validateUpstreamCAs(&v)
	if err := errors.Join(v.errs...); err != nil {
		return Config{}, nil, err
	}
	return c, v.warns, nil
}

// LoadLogging reads and validates only the logging variables, for
// subcommands that need a logger but not the proxy's configuration.
func LoadLogging(environ []string) (Logging, error) {
	var l Logging
	if err := parse(&l, environ); err != nil {
		return Logging{}, err
	}
	var v validation
	l.validate(&v)
	return l, errors.Join(v.errs...)
}

// parse fills dst, a pointer to Config or one of its groups, from environ.
// A variable that is set but empty is an error, never a silent default.
func parse(dst any, environ []string) error {
	vars := env.ToMap(environ)
	t := reflect.TypeOf(dst).Elem()
	var errs []error
	for _, f := range fields(t) {
		if val, ok := vars[f.Tag.Get("env")]; ok && val == "" && !allowedEmpty(f) {
			errs = append(errs, fmt.Errorf("%s: is set but empty; unset it or give it a value", f.Tag.Get("env")))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// slog spells it "warn"; "warning" is what people type.
	if lv, ok := vars["KH_LOG_LEVEL"]; ok && strings.EqualFold(lv, "warning") {
		vars["KH_LOG_LEVEL"] = "warn"
	}
	opts := env.Options{
		Environment: vars,
		FuncMap: map[reflect.Type]env.ParserFunc{
			reflect.TypeFor[url.URL]():             parseURL,
			reflect.TypeFor[[]*x509.Certificate](): parseCAFile,
		},
	}
	if err := env.ParseWithOptions(dst, opts); err != nil {
		return nameVars(err, t)
	}
	clearEmpty(reflect.ValueOf(dst), vars)
	return nil
}

// parseURL parses a URL without quoting it in the error: it may hold a
// password. When it has user info, the reason is taken from parsing a copy
// without it, since url.Parse's reasons can quote part of it.
func parseURL(v string) (any, error) {
	u, err := url.Parse(v)
	if err == nil {
		return *u, nil
	}
	if redacted, ok := withoutUserInfo(v); ok {
		if _, err = url.Parse(redacted); err == nil {
			return nil, errors.New("invalid user info")
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return nil, ue.Err
	}
	return nil, errors.New("unparsable")
}

// withoutUserInfo replaces the user info of a URL's text, everything between
// "//" and the authority's last "@", with "xxxxx".
func withoutUserInfo(v string) (string, bool) {
	i := strings.Index(v, "//")
	if i < 0 {
		return v, false
	}
	authority := v[i+2:]
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return v, false
	}
	return v[:i+2] + "xxxxx" + v[i+2+at:], true
}

// nameVars rewrites caarlos0/env's errors, which name Go fields, to name the
// environment variables instead.
func nameVars(err error, t reflect.Type) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	byField := map[string]string{}
	for _, f := range fields(t) {
		byField[f.Name] = f.Tag.Get("env")
	}
	var errs []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if name, ok := byField[pe.Name]; ok {
				errs = append(errs, fmt.Errorf("%s: not a valid %s: %w", name, typeName(pe.Type), pe.Err))
				continue
			}
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[time.Duration]():
		return "duration (like 30s or 2m)"
	case reflect.TypeFor[int](), reflect.TypeFor[int64]():
		return "whole number"
	case reflect.TypeFor[slog.Level]():
		return "log level (debug, info, warn or error)"
	case reflect.TypeFor[*url.URL]():
		return "URL"
	case reflect.TypeFor[[]Route]():
		return "route list"
	case reflect.TypeFor[Rate]():
		return "rate (like 60/m, or off)"
	case reflect.TypeFor[[]*x509.Certificate]():
		return "PEM file of CA certificates"
	}
	return t.String()
}

// validation collects the errors and warnings of the validate functions.
type validation struct {
	errs  []error
	warns []Warning
}

// fail records an error that names the variable name.
func (v *validation) fail(name, format string, a ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: "+format, append([]any{name}, a...)...))
}

// warn records a warning about the variable name.
func (v *validation) warn(name, msg string) {
	v.warns = append(v.warns, Warning{Var: name, Message: msg})
}

// validateCredentials checks the key and that exactly one secret source is
// set. The secret's content is judged by package signer when it is read.
func (c *Config) validateCredentials(v *validation) {
	keyVar := "KH_KEY"
	if c.KeyFile != "" {
		keyVar = "KH_KEY_FILE"
	}
	switch {
	case c.Key == "" && c.KeyFile != "":
		// loadKeyFile said why.
	case c.Key == "":
		v.fail("KH_KEY", "required: set it to your API key id (kh_live_…), or KH_KEY_FILE to a file holding it")
	case checkKey(c.Key) != "":
		v.fail(keyVar, "%s", checkKey(c.Key))
	case !KeyPattern.MatchString(c.Key):
		v.warn(keyVar, "does not match the documented format kh_live_ + 32 uppercase letters or digits; the API will likely answer 401 bad_key")
	}
	switch {
	case c.Secret != "" && c.SecretFile != "":
		v.fail("KH_SECRET", "set either KH_SECRET or KH_SECRET_FILE, not both")
	case c.Secret == "" && c.SecretFile == "":
		v.fail("KH_SECRET", "required: set KH_SECRET or KH_SECRET_FILE")
	}
}

// validateNetwork checks where khproxy listens and where it forwards to.
func (c *Config) validateNetwork(v *validation) {
	switch u := c.Upstream; {
	case (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		v.fail("KH_UPSTREAM", "must be an absolute http:// or https:// URL, got %q", RedactURL(u))
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		v.fail("KH_UPSTREAM", "must not carry a query, fragment or user info")
	case u.Scheme == "http" && !isLoopbackHost(u.Hostname()):
		v.warn("KH_UPSTREAM", "plain http to a non-loopback host: requests, bodies and signatures cross the network unencrypted")
	}
	c.validateListen(v)
}

// validateLimits checks sizes, timeouts and retry settings.
func (c *Config) validateLimits(v *validation) {
	if c.MaxBodyBytes <= 0 {
		v.fail("KH_MAX_BODY_BYTES", "must be a positive number of bytes, got %d", c.MaxBodyBytes)
	}
	if c.UpstreamTimeout <= 0 {
		v.fail("KH_UPSTREAM_TIMEOUT", "must be positive, got %s", c.UpstreamTimeout)
	}
	if c.RetryMax < 0 {
		v.fail("KH_RETRY_MAX", "must not be negative, got %d", c.RetryMax)
	}
	if c.RetryBudget <= 0 {
		v.fail("KH_RETRY_BUDGET", "must be positive, got %s", c.RetryBudget)
	}
	if c.IdempotencyWindow <= 0 {
		v.fail("KH_IDEMPOTENCY_WINDOW", "must be positive, got %s", c.IdempotencyWindow)
	}
}

func (l *Logging) validate(v *validation) {
	switch l.LogLevel {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
	default:
		v.fail("KH_LOG_LEVEL", "must be debug, info, warn or error, got %q", l.LogLevel)
	}
	switch l.LogFormat {
	case "auto", "text", "json":
	default:
		v.fail("KH_LOG_FORMAT", "must be auto, text or json, got %q", l.LogFormat)
	}
}

// checkKey returns why s is unusable as a key id, or "" when it is fine.
func checkKey(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return "contains white space or control characters (a copy-paste accident?)"
	}
	return ""
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
