// Command soak is khproxy's fault soak (issue 18): it checks, over
// minutes of faults, that every purchase becomes exactly the orders it
// should, on one replica and across replicas. Everything runs on
// 127.0.0.1 and is stopped at the end:
//
//	go run ./bench/soak -minutes 10                    # about 4,900 purchases
//	go run ./bench/soak -minutes 10 -in-progress replay
//	go run ./bench/soak -h                             # all flags
//
// It builds khproxy from this checkout once, then starts
//
//   - a redis-server on a free loopback port (Debian package
//     redis-server), restarted once half-way through the run (down for
//     -redis-down);
//   - the API emulator ("khproxy emulator") with random faults, each at
//     -fault-rate: 503 and 429 before any work; the connection dropped,
//     a 500, or an answer past khproxy's upstream timeout after the order
//     is committed; and a clock offset that walks in 200 s steps up to
//     ±400 s, past the API's ±300 s window. -in-progress chooses what a
//     request with the key of an order still being answered gets (the
//     spec does not say; see the emulator's documentation);
//   - two khproxy replicas sharing the Redis (KH_REDIS_URL), with
//     KH_UPSTREAM_TIMEOUT=-upstream-timeout and otherwise the defaults.
//
// It then drives about -rate purchases a second (POST /v1/orders, each
// with a unique label in its body, which the emulator keeps on the
// order): half with khproxy's automatic key, half with their own
// Idempotency-Key; each caller impatient (a 1.5-3.5 s timeout per
// attempt) or patient (75 s, above KH_RETRY_BUDGET + the upstream
// timeout) at random. A caller retries when it got no answer (its
// timeout, a dropped connection), a 5xx, 408, 425, 429 or 409
// request_in_progress, resending the identical bytes (and its own key,
// if any), half the time through the other replica, after Retry-After
// (at most 5 s) or a short random pause, until -purchase-timeout. Every
// 40th purchase is a pair of twins: the same body sent twice at once
// through either replica, both callers patient and without a key of
// their own: two orders wanted.
//
// When the last caller is done and no order has been added for a while,
// it asks the emulator (GET /__emulator/orders) how many orders each
// label holds, and prints per run: duplicates (orders beyond those
// wanted), lost (orders missing), wrong answers (a final answer other
// than a 201, a 201 for another purchase's order, twins answered with one
// order) and unanswered callers (no final answer within
// -purchase-timeout), the faults the emulator injected, and each
// replica's resident memory and open file descriptors over time. It
// exits non-zero on any duplicate, loss, wrong answer or unanswered
// caller, or when a process died.
//
// Process output (Redis, the emulator's request log, each replica's
// access log) goes to files under -logs (default: a temporary directory,
// removed after a passing run, kept and named after a failing one).
package main

import (
	"context"
	"fmt"
	"io"

	"khproxy/bench/internal/benchproc"
)

func main() { benchproc.Main("soak", run) }

// run runs one soak with the command line args, printing the report to
// stdout and progress to stderr. It returns an error when the soak could
// not run or found a duplicate, loss, wrong answer or unanswered caller.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	s, err := newSoak(o, stderr)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.start(ctx); err != nil {
		return err
	}
	res, err := s.drive(ctx)
	if err != nil {
		return err
	}
	rep := s.report(res)
	rep.print(stdout)
	if err := rep.failure(); err != nil {
		s.keepLogs = true
		return fmt.Errorf("%w (process output kept in %s)", err, s.dir)
	}
	return nil
}
