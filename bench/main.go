// Command khbench is khproxy's load benchmark (issue 10). `bash bench/run`
// builds it and khproxy from this checkout and runs `khbench run`, which
// starts the other pieces as processes of their own, on loopback only:
//
//	khbench run        start everything, drive it, print the results
//	khbench upstream   an upstream that answers like the API (http and https)
//	khbench plain      a plain httputil.ReverseProxy that signs nothing
//	khbench newconn    a load client that opens a new connection per request
//
// docs/performance.md says what is measured and how to read it.
package main

import (
	"context"
	"errors"
	"io"

	"khproxy/bench/internal/benchproc"
)

func main() { benchproc.Main("khbench", dispatch) }

// errUsage marks a command line that could not be understood.
var errUsage = errors.New("usage: khbench run|upstream|plain|newconn [flags]; khbench CMD -h for the flags")

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	switch cmd, args := args[0], args[1:]; cmd {
	case "run":
		return runBench(ctx, args, stdout, stderr)
	case "upstream":
		return runUpstream(ctx, args, stdout, stderr)
	case "plain":
		return runPlain(ctx, args, stdout, stderr)
	case "newconn":
		return runNewConn(ctx, args, stdout, stderr)
	default:
		return errUsage
	}
}
