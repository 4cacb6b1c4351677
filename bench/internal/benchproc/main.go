package benchproc

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Main is the main function of a benchmark command named name: it calls run
// with a context cancelled by SIGINT or SIGTERM, the command line's
// arguments, os.Stdout and os.Stderr. An error is printed as "name: error"
// and exits with status 1, except flag.ErrHelp: the flags' usage was asked
// for (-h) and has been printed.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
