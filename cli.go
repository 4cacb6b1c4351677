package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"

	"khproxy/config"
	"khproxy/internal/logbatch"
)

func usage(w io.Writer) {
	fmt.Fprint(w, `khproxy signs requests for the KernelHost Reseller API: send it plain HTTP,
it adds KH-Key, KH-Timestamp, KH-Nonce, KH-Signature (and an Idempotency-Key
where the API needs one) and forwards the request upstream.

Usage:
  khproxy            run the proxy, configured by the environment below
  khproxy demo       run the proxy in front of a built-in API emulator:
                     no credentials needed; its webhooks are printed
                     (KH_LISTEN, KH_ADMIN_LISTEN, KH_WEBHOOK_LISTEN,
                     KH_WEBHOOK_FORWARD, KH_EMULATOR_LISTEN, KH_LOG_* apply)
  khproxy emulator   run the API emulator alone (khproxy emulator -h)
  khproxy check      check the configuration, secret, network, TLS, clock and
                     key against the API (two or three requests, no order)
  khproxy audit verify FILE...
                     check the hash chain of KH_AUDIT_LOG files and print
                     their totals; fails naming the first line that does not
                     verify
  khproxy version    print the version
  khproxy -h         show this help

Environment:
`)
	printVars(w, config.Vars())
	fmt.Fprint(w, "\nEnvironment of khproxy demo, besides the above:\n")
	printVars(w, config.DemoVars())
}

// printVars prints each variable with its default and meaning.
func printVars(w io.Writer, vars []config.Var) {
	for _, v := range vars {
		def := ""
		if v.Default != "" {
			def = " (default " + v.Default + ")"
		}
		fmt.Fprintf(w, "  %s%s\n      %s\n", v.Name, def, v.Help)
	}
}

// newLogger builds the one logger: coloured text (tint) on a terminal, JSON
// otherwise, unless the configured format forces one. Every time.Duration
// is written as a number of milliseconds under its key plus "_ms"
// (millis). Written to a logbatch.Writer, lines above Info go out at once,
// the rest in batches.
func newLogger(w io.Writer, c config.Logging) *slog.Logger {
	tty := isTerminal(w)
	var h slog.Handler
	if jsonLog(w, c) {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: c.LogLevel, ReplaceAttr: millis})
	} else {
		h = tint.NewHandler(w, &tint.Options{Level: c.LogLevel, TimeFormat: time.TimeOnly, NoColor: !tty, ReplaceAttr: millis})
	}
	if bw, ok := w.(*logbatch.Writer); ok {
		h = logbatch.NewHandler(h, bw)
	}
	return slog.New(h)
}

// jsonLog reports whether the log written to w is JSON: KH_LOG_FORMAT=json,
// or auto and w is not a terminal.
func jsonLog(w io.Writer, c config.Logging) bool {
	return c.LogFormat == "json" || (c.LogFormat == "auto" && !isTerminal(w))
}

// millis writes a time.Duration attribute as a number of milliseconds
// (microsecond precision) under a key ending in "_ms", so that a log
// pipeline reads one unit and one type for every duration.
func millis(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindDuration {
		return a
	}
	key := a.Key
	if !strings.HasSuffix(key, "_ms") {
		key += "_ms"
	}
	return slog.Float64(key, float64(a.Value.Duration().Microseconds())/1000)
}

// batchedLog returns where the proxy's log goes: stderr itself on a
// terminal, where a person reads along; otherwise (a container's pipe, a
// file) a logbatch.Writer over it, so that the access log costs one write
// per batch rather than one per request. close writes what is held; call
// it before the process exits.
func batchedLog(stderr io.Writer) (w io.Writer, close func()) {
	if isTerminal(stderr) {
		return stderr, func() {}
	}
	bw := logbatch.NewWriter(stderr, 0, 0)
	return bw, func() { _ = bw.Close() }
}

// isTerminal reports whether w is a character device, such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Stat() (os.FileInfo, error) })
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
