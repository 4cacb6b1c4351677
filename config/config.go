// Package config reads khproxy's settings from environment variables.
//
// Load is the single entry point: it parses a given environment (never the
// process's own, so tests stay hermetic), applies defaults, and validates each
// value with an error that names the variable. The Vars table, generated from
// the same struct tags, feeds `khproxy -h`.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caarlos0/env/v11"
)

// Config is khproxy's whole configuration. Fields are filled by Load; the zero
// value is not a usable configuration. A Config is plain data, safe to share.
type Config struct {
	Key        string `env:"KH_KEY" help:"API key id sent as KH-Key (kh_live_ + 32 characters). Required."`
	Secret     string `env:"KH_SECRET" help:"API secret used as the HMAC key. Set this or KH_SECRET_FILE, not both."`
	SecretFile string `env:"KH_SECRET_FILE" help:"File holding the API secret (one trailing newline ignored); read again when it changes, e.g. a rotated Kubernetes secret."`

	Upstream         string        `env:"KH_UPSTREAM" envDefault:"https://www.kernelhost.com/cp/kh_reseller_api" help:"Base URL of the API; a client's /v1/x?q goes to {KH_UPSTREAM}/v1/x?q."`
	Listen           string        `env:"KH_LISTEN" envDefault:"127.0.0.1:8080" help:"Address to listen on. Anyone who can reach it can spend the account's money: keep it on loopback."`
	MaxBodyBytes     int64         `env:"KH_MAX_BODY_BYTES" envDefault:"10485760" help:"Largest request body accepted, in bytes; larger ones get 413 and are not sent."`
	UpstreamTimeout  time.Duration `env:"KH_UPSTREAM_TIMEOUT" envDefault:"30s" help:"How long one upstream attempt may take to return response headers."`
	IdempotentRoutes []string      `env:"KH_IDEMPOTENT_ROUTES" envDefault:"POST /v1/orders,POST /v1/services/*/actions" help:"Comma-separated \"METHOD /path\" routes that get an automatic Idempotency-Key; * matches one path segment."`
	RetryMax         int           `env:"KH_RETRY_MAX" envDefault:"3" help:"Most upstream retries after the first attempt (0 disables retries)."`
	RetryBudget      time.Duration `env:"KH_RETRY_BUDGET" envDefault:"30s" help:"Most time spent on one request across all its attempts and backoff waits."`
	IdemWindow       time.Duration `env:"KH_IDEMPOTENCY_WINDOW" envDefault:"10m" help:"How long an unanswered automatic Idempotency-Key is kept for a caller's identical retry."`
	LogLevel         string        `env:"KH_LOG_LEVEL" envDefault:"info" help:"debug, info, warn or error."`
	LogFormat        string        `env:"KH_LOG_FORMAT" envDefault:"auto" help:"auto (coloured text on a terminal, JSON otherwise), text or json."`
	UpstreamCAFile   string        `env:"KH_UPSTREAM_CA_FILE" envDefault:"" help:"PEM file of CA certificates trusted for an https KH_UPSTREAM besides the system's, e.g. a corporate TLS-inspecting proxy's."`
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
	t := reflect.TypeFor[Config]()
	vars := make([]Var, 0, t.NumField())
	for f := range t.Fields() {
		vars = append(vars, Var{Name: f.Tag.Get("env"), Default: f.Tag.Get("envDefault"), Help: f.Tag.Get("help")})
	}
	return vars
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
	vars := env.ToMap(environ)
	var empty []error
	for _, v := range Vars() {
		if val, ok := vars[v.Name]; ok && val == "" {
			empty = append(empty, fmt.Errorf("%s: is set but empty; unset it or give it a value", v.Name))
		}
	}
	if len(empty) > 0 {
		return Config{}, nil, errors.Join(empty...)
	}
	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: vars}); err != nil {
		return Config{}, nil, nameVars(err)
	}
	warnings, err := c.validate()
	if err != nil {
		return Config{}, nil, err
	}
	return c, warnings, nil
}

// nameVars rewrites caarlos0/env's errors, which name Go fields, to name the
// environment variables instead.
func nameVars(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	t := reflect.TypeFor[Config]()
	var errs []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				errs = append(errs, fmt.Errorf("%s: not a valid %s: %w", f.Tag.Get("env"), typeName(pe.Type), pe.Err))
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
	}
	return t.String()
}

// validate checks every field; a KH_SECRET_FILE must be readable and hold a
// usable secret (the signer reads it again when it changes).
func (c *Config) validate() ([]Warning, error) {
	var errs []error
	var warns []Warning
	add := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{name}, a...)...))
	}
	warn := func(name, msg string) { warns = append(warns, Warning{Var: name, Message: msg}) }

	switch {
	case c.Key == "":
		add("KH_KEY", "required: set it to your API key id (kh_live_…)")
	case checkToken(c.Key) != "":
		add("KH_KEY", "%s", checkToken(c.Key))
	case !KeyPattern.MatchString(c.Key):
		warn("KH_KEY", "does not match the documented format kh_live_ + 32 uppercase letters or digits; the API will likely answer 401 bad_key")
	}

	switch {
	case c.Secret != "" && c.SecretFile != "":
		add("KH_SECRET", "set either KH_SECRET or KH_SECRET_FILE, not both")
	case c.Secret == "" && c.SecretFile == "":
		add("KH_SECRET", "required: set KH_SECRET or KH_SECRET_FILE")
	case c.Secret != "":
		if msg := checkToken(c.Secret); msg != "" {
			add("KH_SECRET", "%s", msg)
		}
	default:
		raw, err := os.ReadFile(c.SecretFile)
		if err != nil {
			add("KH_SECRET_FILE", "cannot read the secret: %w", err)
			break
		}
		s := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
		if msg := checkToken(s); msg != "" {
			add("KH_SECRET_FILE", "the file's content %s", msg)
		}
	}

	if u, err := url.Parse(c.Upstream); err != nil {
		add("KH_UPSTREAM", "not a URL: %w", err)
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("KH_UPSTREAM", "must be an absolute http:// or https:// URL, got %q", c.Upstream)
	} else if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		add("KH_UPSTREAM", "must not carry a query, fragment or user info")
	} else if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		warn("KH_UPSTREAM", "plain http to a non-loopback host: requests, bodies and signatures cross the network unencrypted")
	}

	if host, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("KH_LISTEN", "must be host:port, like 127.0.0.1:8080: %w", err)
	} else if !isLoopbackHost(host) {
		warn("KH_LISTEN", "listening beyond loopback: anyone who can reach this port can sign requests with your key and spend the account's money")
	}

	if c.MaxBodyBytes <= 0 {
		add("KH_MAX_BODY_BYTES", "must be a positive number of bytes, got %d", c.MaxBodyBytes)
	}
	if c.UpstreamTimeout <= 0 {
		add("KH_UPSTREAM_TIMEOUT", "must be positive, got %s", c.UpstreamTimeout)
	}
	for _, r := range c.IdempotentRoutes {
		if _, _, err := SplitRoute(r); err != nil {
			add("KH_IDEMPOTENT_ROUTES", "%w", err)
		}
	}
	if c.RetryMax < 0 {
		add("KH_RETRY_MAX", "must not be negative, got %d", c.RetryMax)
	}
	if c.RetryBudget <= 0 {
		add("KH_RETRY_BUDGET", "must be positive, got %s", c.RetryBudget)
	}
	if c.IdemWindow <= 0 {
		add("KH_IDEMPOTENCY_WINDOW", "must be positive, got %s", c.IdemWindow)
	}
	c.validateUpstreamCA(add, warn)
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "warning", "error":
	default:
		add("KH_LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		add("KH_LOG_FORMAT", "must be auto, text or json, got %q", c.LogFormat)
	}
	return warns, errors.Join(errs...)
}

// SplitRoute parses one KH_IDEMPOTENT_ROUTES entry, "METHOD /path", where the
// path may use * for exactly one segment. Surrounding spaces are ignored.
func SplitRoute(route string) (method, path string, err error) {
	method, path, ok := strings.Cut(strings.TrimSpace(route), " ")
	path = strings.TrimSpace(path)
	if !ok || method == "" || path == "" {
		return "", "", fmt.Errorf("route %q: want \"METHOD /path\", like \"POST /v1/orders\"", route)
	}
	if method != strings.ToUpper(method) || strings.ContainsFunc(method, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		return "", "", fmt.Errorf("route %q: method must be an uppercase HTTP method", route)
	}
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " ?#") {
		return "", "", fmt.Errorf("route %q: path must start with / and hold no spaces, query or fragment", route)
	}
	return method, path, nil
}

// checkToken returns why s is unusable as a key or secret, or "" when it is
// fine. It never quotes s, which may be secret.
func checkToken(s string) string {
	if s == "" {
		return "is empty"
	}
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
