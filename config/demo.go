package config

import (
	"errors"
	"net"
	"reflect"
	"strconv"
)

// Demo is what `khproxy demo` reads besides the proxy's own configuration:
// where its built-in API emulator listens. `khproxy` itself never reads it.
type Demo struct {
	EmulatorListen string `env:"KH_EMULATOR_LISTEN" envDefault:"127.0.0.1:0" help:"khproxy demo only: address (host:port) of the demo's API emulator and its unauthenticated control endpoint /__emulator/; port 0 picks a free one. The banner prints it, as KH_UPSTREAM."`
}

// LoadDemo reads and validates the demo's variables from environ.
func LoadDemo(environ []string) (Demo, error) {
	var d Demo
	if err := parse(&d, environ); err != nil {
		return Demo{}, err
	}
	var v validation
	if _, port, err := net.SplitHostPort(d.EmulatorListen); err != nil {
		v.fail("KH_EMULATOR_LISTEN", "must be host:port, like 127.0.0.1:8081: %w", err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.fail("KH_EMULATOR_LISTEN", "port must be a number from 0 to 65535, got %q", port)
	}
	return d, errors.Join(v.errs...)
}

// DemoVars lists the variables LoadDemo reads, for `khproxy -h` and the
// configuration reference.
func DemoVars() []Var { return varsOf(reflect.TypeFor[Demo]()) }
