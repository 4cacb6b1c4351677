package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"khproxy/internal/bytebudget"
	"khproxy/signer"
)

// Defaults for a Receiver's zero fields.
const (
	DefaultTolerance    = 5 * time.Minute
	DefaultMaxBodyBytes = 1 << 20
	DefaultMaxSeen      = 10000
	// DefaultMaxInflightBytes is the memory budget for the bodies of
	// deliveries held at once when Budget is nil: webhooks are small,
	// and the listener faces the internet.
	DefaultMaxInflightBytes = 1 << 20
	// DefaultBudgetWait is how long a delivery waits for room in the
	// budget when BudgetWait is 0; the sender retries a 503 later.
	DefaultBudgetWait = 2 * time.Second
)

// VerifiedHeader is set to "true" on every request a Receiver hands to Next;
// any value the sender sent under that name is replaced.
const VerifiedHeader = "KH-Webhook-Verified"

// Receiver is the http.Handler that receives webhook deliveries. It accepts
// POST on any path, so that the URL registered with the API is free; other
// methods get 405. It parses the signature header and checks its timestamp
// against the tolerance before it reads a byte of the body: a header that is
// missing, malformed, stale or from the future costs no body (stale and
// future are then answered whether or not the signature would match). It
// then reads the body (at most MaxBodyBytes, else 413) within its memory
// Budget, room taken as the bytes arrive (503 with Retry-After when none
// comes within BudgetWait), and verifies it as Verify does; what fails is
// rejected with a 400 problem+json naming the reason, logged, never passed on. A verified delivery
// goes to Next with its original body bytes and headers plus
// KH-Webhook-Verified: true, and Next's answer goes back to the sender, so
// that the sender's own retries work.
//
// A delivery whose signed payload (timestamp and body) was already forwarded
// and answered 2xx by Next is a replay: it gets 200 and is not passed on
// again. While the first is still with Next, an identical one waits for its
// outcome; if Next did not answer 2xx, the next identical delivery is passed
// on as if new. The payloads are remembered in a bounded LRU: a replay of a
// payload evicted by MaxSeen newer ones within the tolerance is forwarded again.
//
// Set the fields before the first request and do not change them after; from
// then on a Receiver is safe for concurrent use. Secret and Next are required.
type Receiver struct {
	// Secret yields the webhook signing secret, asked once per delivery so
	// that a rotated secret (signer.FileSecret) applies without a restart.
	// An error answers 503, so that the sender retries later.
	Secret signer.SecretSource
	// Header names the header that carries the signature; "" means
	// DefaultHeader. A request with the header twice is malformed.
	Header string
	// Tolerance is how far the signature's timestamp may lie from the
	// receiver's clock, in either direction; zero or less means
	// DefaultTolerance.
	Tolerance time.Duration
	// MaxBodyBytes is the largest body accepted; zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Budget bounds the bytes of the bodies held at once, from the first
	// byte read until Next has answered; nil means a budget of
	// DefaultMaxInflightBytes of the Receiver's own. A body larger than the
	// whole budget gets 413.
	Budget *bytebudget.Budget
	// BudgetWait bounds how long a delivery waits for room in Budget,
	// before it gets 503 with Retry-After; zero means DefaultBudgetWait.
	BudgetWait time.Duration
	// MaxSeen bounds the payloads remembered for replay detection; zero
	// means DefaultMaxSeen. Size it above the deliveries expected within
	// twice the tolerance.
	MaxSeen int
	// Next receives each verified delivery, usually a Forwarder to the app.
	// Its request has the body already read into memory (Body can be read
	// again through GetBody) and the sender's context.
	Next http.Handler
	// Logger receives one line per delivery, never the secret or the
	// signature; nil discards.
	Logger *slog.Logger
	// Now is the clock the timestamp is checked against; nil means time.Now.
	Now func() time.Time
	// OnOutcome, when set, is called once per request with its outcome,
	// after the answer was written, from the request's goroutine; it must be
	// safe for concurrent use (a prometheus CounterVec's Inc is).
	OnOutcome func(Outcome)

	once   sync.Once
	seen   *seenSet
	budget *bytebudget.Budget
}

func (rc *Receiver) init() {
	rc.once.Do(func() {
		n := rc.MaxSeen
		if n <= 0 {
			n = DefaultMaxSeen
		}
		rc.seen = newSeenSet(n)
		rc.budget = rc.Budget
		if rc.budget == nil {
			rc.budget = bytebudget.New(DefaultMaxInflightBytes)
		}
	})
}

func (rc *Receiver) header() string {
	if rc.Header == "" {
		return DefaultHeader
	}
	return rc.Header
}

func (rc *Receiver) tolerance() time.Duration {
	if rc.Tolerance <= 0 {
		return DefaultTolerance
	}
	return rc.Tolerance
}

func (rc *Receiver) maxBody() int64 {
	if rc.MaxBodyBytes <= 0 {
		return DefaultMaxBodyBytes
	}
	return rc.MaxBodyBytes
}

func (rc *Receiver) budgetWait() time.Duration {
	if rc.BudgetWait <= 0 {
		return DefaultBudgetWait
	}
	return rc.BudgetWait
}

func (rc *Receiver) log() *slog.Logger {
	if rc.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return rc.Logger
}

func (rc *Receiver) now() time.Time {
	if rc.Now == nil {
		return time.Now()
	}
	return rc.Now()
}

// ServeHTTP handles one delivery; see Receiver.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.init()
	start := time.Now()
	defer func() {
		// Next may abort the response (httputil.ReverseProxy panics with
		// http.ErrAbortHandler when the app's body breaks off): it still
		// counts, and net/http still gets the panic.
		if p := recover(); p != nil {
			rc.finish(r, start, OutcomeAppError, 0, fmt.Errorf("response to the sender aborted: %v", p))
			panic(p)
		}
	}()
	o, status, err := rc.serve(w, r)
	rc.finish(r, start, o, status, err)
}

// finish logs the delivery and reports its outcome. status is the one sent,
// 0 when the answer broke off.
func (rc *Receiver) finish(r *http.Request, start time.Time, o Outcome, status int, err error) {
	level, msg := slog.LevelInfo, "webhook delivered"
	switch {
	case o == OutcomeSecret:
		level, msg = slog.LevelError, "webhook rejected"
	case o.rejected():
		level, msg = slog.LevelWarn, "webhook rejected"
	case o == OutcomeReplay:
		msg = "webhook replay: answered, not forwarded again"
	case o != OutcomeForwarded:
		level, msg = slog.LevelWarn, "webhook not taken by the app"
	}
	attrs := []slog.Attr{slog.String("outcome", string(o)), slog.Int("status", status),
		slog.String("remote", r.RemoteAddr), slog.Duration("duration", time.Since(start))}
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	rc.log().LogAttrs(r.Context(), level, msg, attrs...)
	if rc.OnOutcome != nil {
		rc.OnOutcome(o)
	}
}

// serve answers r and returns its outcome, the status sent and, for the log,
// the cause.
func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) (Outcome, int, error) {
	if r.Method != http.MethodPost {
		return OutcomeMethod, writeProblem(w, OutcomeMethod), errors.New("method " + r.Method)
	}
	// The header is judged before the body is read: an unsigned or
	// malformed request costs no body.
	sig, o, err := rc.parse(r)
	if err != nil {
		return o, writeProblem(w, o), err
	}
	if err := sig.timely(rc.now(), rc.tolerance()); err != nil {
		o := outcomeOf(err)
		return o, writeProblem(w, o), err
	}
	claim := r.ContentLength
	if claim < 0 {
		claim = rc.maxBody()
	}
	hold := rc.budget.NewHold(claim, rc.budgetWait())
	defer hold.Release() // once Next has answered: it reads the body
	body, o, err := rc.readBody(w, r, hold)
	if err != nil {
		return o, writeProblem(w, o), err
	}
	if rc.Secret == nil || rc.Next == nil {
		return OutcomeSecret, writeProblem(w, OutcomeSecret), errors.New("receiver misconfigured: Secret and Next are required")
	}
	secret, err := rc.Secret.Secret()
	if err != nil {
		return OutcomeSecret, writeProblem(w, OutcomeSecret), err
	}
	ts, err := sig.check(secret, body, rc.now(), rc.tolerance())
	if err != nil {
		o := outcomeOf(err)
		return o, writeProblem(w, o), err
	}

	key := payloadKey(ts, body)
	d, replay, err := rc.seen.claim(r.Context(), key)
	switch {
	case err != nil:
		return OutcomeSenderGone, writeProblem(w, OutcomeSenderGone), err
	case replay:
		w.WriteHeader(http.StatusOK)
		return OutcomeReplay, http.StatusOK, nil
	}
	ok := false
	defer func() { rc.seen.release(key, d, ok) }() // also when Next panics
	o, status := rc.forward(w, r, body)
	ok = o == OutcomeForwarded
	return o, status, nil
}

// parse parses the signature header; on failure it returns the outcome to
// answer with.
func (rc *Receiver) parse(r *http.Request) (parsed, Outcome, error) {
	var header string
	switch vals := r.Header.Values(rc.header()); len(vals) {
	case 0:
	case 1:
		header = vals[0]
	default:
		return parsed{}, OutcomeMalformed, errors.New("more than one " + rc.header() + " header")
	}
	p, err := parseHeader(header)
	if err != nil {
		return parsed{}, outcomeOf(err), err
	}
	return p, "", nil
}

// readBody reads the whole body, refusing more than the limit, with room
// for it taken in hold as it arrives; on failure it returns the outcome to
// answer with.
func (rc *Receiver) readBody(w http.ResponseWriter, r *http.Request, hold *bytebudget.Hold) (body, Outcome, error) {
	limit := rc.maxBody()
	if r.ContentLength > limit {
		return nil, OutcomeTooLarge, errors.New("Content-Length " + strconv.FormatInt(r.ContentLength, 10) + " over the limit")
	}
	if r.ContentLength > rc.budget.Limit() {
		return nil, OutcomeTooLarge, errors.New("Content-Length " + strconv.FormatInt(r.ContentLength, 10) + " over the memory budget")
	}
	pieces, err := hold.ReadPieces(r.Context(), http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, OutcomeTooLarge, errors.New("body over the limit of " + strconv.FormatInt(limit, 10) + " bytes")
		}
		switch {
		case errors.Is(err, bytebudget.ErrNeverFits):
			return nil, OutcomeTooLarge, errors.New("body over the memory budget of " + strconv.FormatInt(rc.budget.Limit(), 10) + " bytes")
		case errors.Is(err, bytebudget.ErrNoRoom):
			return nil, OutcomeOverloaded, err
		}
		return nil, OutcomeBadBody, err
	}
	return pieces, "", nil
}

// forward hands the verified delivery to Next and returns its outcome and
// status.
func (rc *Receiver) forward(w http.ResponseWriter, r *http.Request, b body) (Outcome, int) {
	note := &forwardNote{}
	out := r.Clone(context.WithValue(r.Context(), noteKey{}, note))
	out.Body = io.NopCloser(b.reader())
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(b.reader()), nil }
	out.ContentLength = b.len()
	out.Header.Set(VerifiedHeader, "true")
	rec := &statusRecorder{ResponseWriter: w}
	rc.Next.ServeHTTP(rec, out)
	status := rec.status
	if status == 0 {
		status = http.StatusOK // Next wrote nothing: net/http answers 200
	}
	switch {
	case note.outcome != "":
		return note.outcome, status
	case status >= 200 && status < 300:
		return OutcomeForwarded, status
	}
	return OutcomeAppError, status
}

// forwardNote lets a Forwarder tell the Receiver that it answered for an app
// it could not reach, which a status alone cannot tell from the app's own 503.
type forwardNote struct{ outcome Outcome }

type noteKey struct{}

// noteOutcome records o for the Receiver that passed ctx on, if any.
func noteOutcome(ctx context.Context, o Outcome) {
	if n, ok := ctx.Value(noteKey{}).(*forwardNote); ok {
		n.outcome = o
	}
}

// statusRecorder remembers the status Next answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 && code >= 200 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (flush,
// deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// body is a delivery's body as it was read: pieces of memory, in order.
type body [][]byte

func (b body) len() int64 {
	var n int64
	for _, p := range b {
		n += int64(len(p))
	}
	return n
}

// reader returns a fresh reader over the whole body.
func (b body) reader() io.Reader {
	rs := make([]io.Reader, len(b))
	for i, p := range b {
		rs[i] = bytes.NewReader(p)
	}
	return io.MultiReader(rs...)
}
