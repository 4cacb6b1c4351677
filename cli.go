package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"

	"khproxy/config"
)

func usage(w io.Writer) {
	fmt.Fprint(w, `khproxy signs requests for the KernelHost Reseller API: send it plain HTTP,
it adds KH-Key, KH-Timestamp, KH-Nonce, KH-Signature (and an Idempotency-Key
where the API needs one) and forwards the request upstream.

Usage:
  khproxy            run the proxy, configured by the environment below
  khproxy demo       run the proxy in front of a built-in API emulator:
                     no credentials needed (KH_LISTEN and KH_LOG_* apply)
  khproxy emulator   run the API emulator alone (khproxy emulator -h)
  khproxy -h         show this help

Environment:
`)
	for _, v := range config.Vars() {
		def := ""
		if v.Default != "" {
			def = " (default " + v.Default + ")"
		}
		fmt.Fprintf(w, "  %s%s\n      %s\n", v.Name, def, v.Help)
	}
}

// newLogger builds the one logger: coloured text (tint) on a terminal, JSON
// otherwise, unless the configured format forces one.
func newLogger(w io.Writer, c config.Logging) *slog.Logger {
	tty := isTerminal(w)
	if c.LogFormat == "json" || (c.LogFormat == "auto" && !tty) {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: c.LogLevel}))
	}
	return slog.New(tint.NewHandler(w, &tint.Options{Level: c.LogLevel, TimeFormat: time.TimeOnly, NoColor: !tty}))
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
