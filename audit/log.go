// Package audit keeps khproxy's own tamper-evident record of the write calls
// an app made with the API key: one JSON line per call (any method but GET,
// HEAD and OPTIONS), sent or refused, each line carrying the hash of the one
// before it, as the API's own audit log does (spec §4.5). Changing,
// removing or reordering a line breaks the chain, which Verify (and
// `khproxy audit verify`) reports.
//
// A Log is a proxy.Gate: the proxy tells it how each call was answered
// before the caller sees the answer, and the line is appended and synced to
// disk by then. The package knows nothing of environment variables.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"khproxy/proxy"
)

// Options configures a Log.
type Options struct {
	// Required turns write calls away (503 audit_unavailable) while the
	// log cannot be written, rather than let them go unrecorded. The log
	// is tried again with each call: one that is written clears it.
	Required bool
	// Logger receives write failures at ERROR; nil discards them.
	Logger *slog.Logger
	// Registerer receives khproxy_audit_records_total and
	// khproxy_audit_write_failures_total; nil registers nothing.
	Registerer prometheus.Registerer
}

// Log appends records to one file, continuing the chain it holds. Create
// it with Open and Close it when done; it is safe for concurrent use.
// Only one Log may have a file open: a second Open of it, in this process
// or another (a replica sharing a volume), fails.
type Log struct {
	opts     Options
	log      *slog.Logger
	records  prometheus.Counter
	failures prometheus.Counter

	mu     sync.Mutex
	f      *os.File
	path   string
	size   int64  // the file's length after the last whole line
	prev   string // the last line's hash
	broken error  // the last write's failure, nil once one succeeds
}

var _ proxy.Gate = (*Log)(nil)

// Open opens or creates the log file at path (mode 0600) for appending,
// locks it, and checks its last line so that new lines continue its chain.
// A file whose last line is incomplete or does not verify is refused, as
// continuing it would hide what happened to it.
func Open(path string, opts Options) (*Log, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	l := &Log{opts: opts, log: opts.Logger, f: f, path: path, prev: Genesis}
	if err := l.open(); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	l.records = prometheus.NewCounter(prometheus.CounterOpts{Name: "khproxy_audit_records_total", Help: "Lines written to the audit log."})
	l.failures = prometheus.NewCounter(prometheus.CounterOpts{Name: "khproxy_audit_write_failures_total", Help: "Write calls whose audit line could not be written and synced."})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{l.records, l.failures} {
			if err := opts.Registerer.Register(c); err != nil {
				f.Close()
				return nil, errors.Join(errors.New("audit: registering metrics"), err)
			}
		}
	}
	return l, nil
}

// open locks the file and reads its last line.
func (l *Log) open() error {
	if err := lock(l.f); err != nil {
		return err
	}
	st, err := l.f.Stat()
	if err != nil {
		return err
	}
	l.size = st.Size()
	if l.size == 0 {
		return nil
	}
	last, err := lastLine(l.f, l.size)
	if err != nil {
		return err
	}
	_, hash, err := parseLine(last)
	if err != nil {
		return fmt.Errorf("its last line does not verify (%w); run khproxy audit verify on it", err)
	}
	l.prev = hash
	return nil
}

// lastLine returns the file's last line, without its newline. The file
// must end in a newline: one that does not ends in a torn write.
func lastLine(f *os.File, size int64) ([]byte, error) {
	var tail []byte
	for off := size; ; {
		n := min(off, 64<<10)
		off -= n
		chunk := make([]byte, n)
		if _, err := f.ReadAt(chunk, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		tail = append(chunk, tail...)
		if len(tail) > 0 && tail[len(tail)-1] != '\n' {
			return nil, errors.New("it ends in an incomplete line (a write cut short); inspect it with khproxy audit verify, keep a copy and remove the incomplete end before starting again")
		}
		body := tail[:len(tail)-1]
		for i := len(body) - 1; i >= 0; i-- {
			if body[i] == '\n' {
				return body[i+1:], nil
			}
		}
		if off == 0 {
			return body, nil
		}
		if len(tail) > 16<<20 {
			return nil, errors.New("its last line is longer than 16 MiB")
		}
	}
}

// Close closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// logged reports whether calls with method get a line.
func logged(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// Admit implements proxy.Gate: with Required, a write call is turned away
// while the log cannot be written.
func (l *Log) Admit(_ context.Context, c *proxy.Call) error {
	if !l.opts.Required || !logged(c.Method) {
		return nil
	}
	l.mu.Lock()
	broken := l.broken
	l.mu.Unlock()
	if broken != nil {
		return &proxy.Error{Kind: proxy.KindAuditUnavailable, Err: broken, RetryAfter: 5 * time.Second,
			Detail: "khproxy cannot write its audit log, which is required, so it sends no write call; the request was not sent"}
	}
	return nil
}

// Record implements proxy.Gate: it appends and syncs the call's line.
func (l *Log) Record(c *proxy.Call, o *proxy.Outcome) {
	if !logged(c.Method) {
		return
	}
	rec := newRecord(c, o)
	if err := l.Append(rec); err != nil {
		l.failures.Inc()
		l.log.Error("audit log write failed: this call has no audit line", "file", l.path, "error", err,
			"request_id", c.ID, "method", c.Method, "path", c.Target, "status", o.Status, "api_request_id", o.UpstreamRequestID)
		return
	}
	l.records.Inc()
}

// Append writes rec as the next line, its Prev set to the chain's last
// hash, and syncs the file. A line that could not be written whole is
// cut off again, so that the file always ends in a whole line.
func (l *Log) Append(rec *Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec.Prev = l.prev
	b, hash, err := line(rec)
	if err != nil {
		return err
	}
	if n, err := l.f.Write(b); err != nil || n != len(b) {
		if terr := l.f.Truncate(l.size); terr != nil {
			err = errors.Join(err, fmt.Errorf("and cutting off the partial line failed: %w", terr))
		}
		l.broken = fmt.Errorf("write: %w", err)
		return l.broken
	}
	l.size += int64(len(b))
	l.prev = hash
	if err := l.f.Sync(); err != nil {
		l.broken = fmt.Errorf("sync: %w", err)
		return l.broken
	}
	l.broken = nil
	return nil
}

// newRecord builds the line of call c answered with o.
func newRecord(c *proxy.Call, o *proxy.Outcome) *Record {
	rec := &Record{
		Time: c.Time.UTC().Format(time.RFC3339Nano), ID: c.ID, Client: c.RemoteAddr,
		Method: c.Method, Path: c.Target, Route: c.Route,
		Status: o.Status, Sent: o.Sent, UpstreamStatus: o.UpstreamStatus, APIRequestID: o.UpstreamRequestID,
		IdempotencyKey: c.IdempotencyKey, KeySource: c.KeySource, Shared: o.Shared, Error: string(o.Kind), Detail: o.Detail,
	}
	switch o.Kind {
	case proxy.KindNotAllowed, proxy.KindOrderLimit, proxy.KindSpendLimit, proxy.KindGuardUnavailable, proxy.KindAuditUnavailable:
		rec.Rule = string(o.Kind)
	}
	if o.UpstreamStatus >= 200 && o.UpstreamStatus < 300 && len(o.Answer) > 0 {
		var a struct {
			ID       json.RawMessage `json:"id"`
			Amount   json.RawMessage `json:"amount"`
			Currency string          `json:"currency"`
		}
		if json.Unmarshal(o.Answer, &a) == nil {
			if c.Route == "/v1/orders" {
				rec.OrderID = scalar(a.ID)
			}
			rec.Amount, rec.Currency = scalar(a.Amount), a.Currency
		}
	}
	return rec
}

// scalar returns a JSON string's content or a number's text, "" otherwise.
func scalar(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}
