package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"time"

	"khproxy/apiroute"
)

// A Gate judges requests before they are sent and hears how each one was
// answered, before its caller does: the hook for policies (package guard:
// allow-list, order and spend limits) and records (package audit) that the
// proxy itself knows nothing of. Options.Gates lists them; with none, the
// proxy does exactly what it does without this file.
//
// Call order, for every request the proxy handles:
//
//  1. khproxy's own checks (target, body, Idempotency-Key). A request they
//     refuse goes straight to 3.
//  2. Admit, gate by gate in Options.Gates order, once the body is held and
//     the Idempotency-Key picked (a caller's identical retry has taken its
//     earlier request's key by then), and before anything is sent
//     upstream. The first refusal stops the others and the request: it is
//     answered with the refusal and never sent. A request answered with an
//     identical earlier request's answer is not admitted: it is not sent.
//  3. Record, on every gate, exactly once (CONNECT, refused by a hijacked
//     connection, is no API call and is not told), when the answer's status is
//     known and before its status line is written to the caller; for an
//     answer from the API, after its body was read up to AnswerPeek bytes.
//     What Record does (a synced audit line, a spend counted) is therefore
//     done before the caller can act on the answer.
//
// Both run on the request's goroutine, or on the one ReverseProxy flushes
// from; never both at once for one request. Implementations must be safe
// for concurrent use across requests.
type Gate interface {
	// Admit returns nil to let c go on, or the error to answer it with:
	// an *Error, whose Kind sets the status (KindNotAllowed,
	// KindOrderLimit, KindSpendLimit, KindGuardUnavailable,
	// KindAuditUnavailable); any other error is answered as a 503
	// guard_unavailable. ctx ends when the request is given up.
	Admit(ctx context.Context, c *Call) error
	// Record hears how c was answered. It cannot change the answer.
	Record(c *Call, o *Outcome)
}

// AnswerPeek bounds how much of the API's answer to a write call (any
// method but GET, HEAD and OPTIONS) is read before Record, for the gates to
// find an order's id and amount: the API's answers to writes are small JSON
// documents. The rest, if any, follows unread.
const AnswerPeek = 64 << 10

// Call is one request as the gates see it. The proxy fills it; gates only
// read it, and keep their own per-request notes with Set and Value. The
// zero value is not one.
type Call struct {
	// ID is khproxy's id for the request, the request_id of every log
	// line about it, also sent to the caller as the RequestIDHeader.
	ID string
	// Time is when the request was read (its body included).
	Time time.Time
	// Method is the request method as sent.
	Method string
	// Target is the signed request-target: the path after the upstream
	// base, with its query; "" when the proxy refused it before parsing.
	Target string
	// Route is the API route template Target matches (package apiroute),
	// or apiroute.Other.
	Route string
	// IdempotencyKey is the Idempotency-Key sent upstream, "" for none;
	// KeySource says where it came from (KeyAuto, KeyClient, KeyReused).
	IdempotencyKey, KeySource string
	// RemoteAddr is the caller's address as the server reported it.
	RemoteAddr string

	ex     *exchange // set during Admit only
	body   []byte
	read   bool
	values map[any]any
}

// Body returns the request body, read once from the held copy; nil when
// there is none. It can be read during Admit only (the held copy is
// dropped once the request is sent); in Record it returns what was read
// then, or nil. The slice must not be modified.
func (c *Call) Body() []byte {
	if !c.read && c.ex != nil && c.ex.body != nil && c.ex.bodyHash != "" {
		c.read = true
		rd := c.ex.body.Reader()
		c.body, _ = io.ReadAll(rd)
		rd.Close()
	}
	return c.body
}

// Set keeps v under key for this call, for the same gate's Record.
func (c *Call) Set(key, v any) {
	if c.values == nil {
		c.values = map[any]any{}
	}
	c.values[key] = v
}

// Value returns what Set kept under key, or nil.
func (c *Call) Value(key any) any { return c.values[key] }

// Outcome is how a Call was answered.
type Outcome struct {
	// Status is the status the caller gets.
	Status int
	// Kind is the Kind khproxy answered with itself, "" when the answer is
	// the API's.
	Kind Kind
	// Detail is khproxy's own answer's detail, "" with the API's answer.
	Detail string
	// Sent reports that an attempt may have reached the API: false means
	// the API certainly did not see the request.
	Sent bool
	// Shared reports that the answer is an identical earlier request's,
	// given again without sending this one.
	Shared bool
	// UpstreamStatus is the API's status, 0 when it did not answer.
	UpstreamStatus int
	// UpstreamRequestID is the API's X-Request-Id, "" when none.
	UpstreamRequestID string
	// Answer is the start of the API's answer body to a write call, up to
	// AnswerPeek bytes; nil for other calls and shared answers. Complete
	// reports that it is the whole body.
	Answer   []byte
	Complete bool
}

// writeMethod reports whether m changes state; only the answers to these
// are peeked at.
func writeMethod(m string) bool {
	return m != http.MethodGet && m != http.MethodHead && m != http.MethodOptions
}

// call returns ex's Call, made on first use.
func (p *Proxy) call(r *http.Request, ex *exchange) *Call {
	if ex.call == nil {
		ex.call = &Call{ID: ex.id, Time: p.now(), Method: r.Method, RemoteAddr: r.RemoteAddr}
	}
	c := ex.call
	c.Target, c.Route = ex.target, apiroute.Of(ex.target)
	c.IdempotencyKey, c.KeySource = ex.idemKey, ex.keySource
	return c
}

// admit asks every gate to admit r; a refusal is answered and false
// returned.
func (p *Proxy) admit(ctx context.Context, w *recorder, r *http.Request, ex *exchange) bool {
	if len(p.gates) == 0 {
		return true
	}
	c := p.call(r, ex)
	c.ex = ex
	for _, g := range p.gates {
		if err := g.Admit(ctx, c); err != nil {
			c.ex = nil
			if _, ok := err.(*Error); !ok {
				err = &Error{Kind: KindGuardUnavailable, Detail: "khproxy could not check its limits; the request was not sent", Err: err}
			}
			p.fail(w, r, ex, err)
			return false
		}
	}
	c.ex = nil
	return true
}

// recordOnSend makes w tell the gates how r was answered just before its
// status line goes out.
func (p *Proxy) recordOnSend(w *recorder, r *http.Request, ex *exchange) {
	if len(p.gates) == 0 {
		return
	}
	p.call(r, ex) // made now, so that its Time is when the request was read
	w.onSend = func() {
		c := p.call(r, ex)
		o := &Outcome{Status: w.status, Sent: ex.up.Sent.Load(), Shared: ex.shared,
			UpstreamStatus: ex.upstreamStatus, UpstreamRequestID: ex.apiRequestID,
			Answer: ex.answer, Complete: ex.answerComplete}
		if ex.err != nil {
			o.Kind, o.Detail = ex.err.Kind, ex.err.Detail
		}
		for _, g := range p.gates {
			g.Record(c, o)
		}
	}
}

// peekAnswer reads the start of the API's answer to a write call into ex,
// and puts it back in front of the rest, when there are gates to read it.
func (p *Proxy) peekAnswer(resp *http.Response, ex *exchange) error {
	if len(p.gates) == 0 || !writeMethod(resp.Request.Method) || resp.Body == nil || resp.Body == http.NoBody {
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, AnswerPeek+1))
	if err != nil {
		return err
	}
	ex.answerComplete = len(buf) <= AnswerPeek
	ex.answer = buf[:min(len(buf), AnswerPeek)]
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), resp.Body), resp.Body}
	return nil
}

// NewCall returns the Call the proxy would make for a request with method,
// target and body, at now, with Idempotency-Key key from source: for tests
// and benchmarks of a Gate without a proxy.
func NewCall(method, target string, body []byte, key, source string, now time.Time) *Call {
	return &Call{ID: newRequestID(), Time: now, Method: method, Target: target, Route: apiroute.Of(target),
		IdempotencyKey: key, KeySource: source, body: body, read: true}
}
