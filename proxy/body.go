package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"khproxy/internal/bytebudget"
	"khproxy/proxy/heldbody"
)

// readBody reads the whole request body into memory paid for by the budget,
// and hashes it. Room is reserved as the bytes arrive (package heldbody), so
// a client that declares a large body and sends it slowly, or not at all,
// holds no more than what it sent.
//
// A request with Expect: 100-continue is answered before its client is
// asked for the body when the body could not be held: 413 when it is
// declared larger than the limits, 503 at once when the budget has no room
// now (rather than after KH_MAX_INFLIGHT_WAIT, by when the client, tired of
// waiting for 100 Continue, would have sent it).
func (p *Proxy) readBody(w *recorder, r *http.Request, ex *exchange) error {
	h := heldbody.New(p.budget)
	ex.body = h
	defer p.receiving(w)()
	claim := r.ContentLength
	if claim < 0 {
		claim = p.maxBody
	}
	var err error
	unasked := false // refused before any byte of the body was asked for
	switch {
	case r.ContentLength > p.maxBody:
		err, unasked = &http.MaxBytesError{Limit: p.maxBody}, true
	case r.ContentLength > p.budget.Limit():
		err, unasked = heldbody.ErrNeverFits, true
	case r.ContentLength != 0 && expectsContinue(r) && !p.budget.Admits(claim, bytebudget.MinStep):
		err, unasked = heldbody.ErrNoRoom, true
	case r.ContentLength >= 0:
		err = h.ReadKnown(r.Context(), r.Body, r.ContentLength, p.budgetWait)
	default:
		// The real writer, so that the server can close the connection
		// after a body that was too large.
		body := http.MaxBytesReader(w.ResponseWriter, r.Body, p.maxBody)
		err = h.ReadUnknown(r.Context(), body, p.maxBody, p.budgetWait)
	}
	if err != nil {
		// The rest of the body is unread: close the connection rather
		// than let the server read it before answering.
		w.closeConn = true
		var mbe *http.MaxBytesError
		refused := errors.As(err, &mbe) || errors.Is(err, heldbody.ErrNeverFits) || errors.Is(err, heldbody.ErrNoRoom)
		// A client that was not told to go on sends no body: there is
		// nothing to drain, and waiting for it would hold the handler.
		ex.refusedUnread = refused && !(unasked && expectsContinue(r))
		return p.bodyError(err)
	}
	ex.bodyHash = h.Hash()
	return nil
}

// expectsContinue reports whether the client waits for 100 Continue before
// it sends the body (RFC 9110 §10.1.1); Go's server sends it on the first
// read of the body.
func expectsContinue(r *http.Request) bool {
	return r.ProtoAtLeast(1, 1) && strings.EqualFold(r.Header.Get("Expect"), "100-continue")
}

// drainRefused reads and discards, once the answer has gone out, the body
// of a request refused before it was read (413, or 503 for want of room),
// up to the body limit and within the read timeout: a client still sending
// it then gets to read the answer, instead of a connection reset when the
// connection closes on unread bytes. Nothing of it is kept.
func (p *Proxy) drainRefused(w *recorder, r *http.Request, ex *exchange) {
	if !ex.refusedUnread {
		return
	}
	rc := http.NewResponseController(w.ResponseWriter)
	if rc.EnableFullDuplex() != nil || rc.Flush() != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, r.Body, p.maxBody+1)
}

// bodyError maps a failure to read the body to what the client is told.
func (p *Proxy) bodyError(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &Error{Kind: KindBodyTooLarge, Detail: fmt.Sprintf("the request body exceeds %d bytes", p.maxBody)}
	case errors.Is(err, heldbody.ErrNeverFits):
		return &Error{Kind: KindBodyTooLarge, Detail: fmt.Sprintf("the request body is larger than khproxy's memory budget for bodies (%d bytes)", p.budget.Limit())}
	case errors.Is(err, heldbody.ErrNoRoom):
		return &Error{Kind: KindOverloaded, Detail: "khproxy's memory budget for request bodies is full: retry shortly", Err: err, RetryAfter: time.Second}
	case errors.Is(err, os.ErrDeadlineExceeded) && p.stopping():
		return &Error{Kind: KindShuttingDown, Detail: "khproxy is shutting down: nothing was sent; send the request again", Err: err, RetryAfter: time.Second}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Kind: KindRequestTimeout, Detail: "the request was not received within khproxy's read timeout", Err: err}
	case errors.Is(err, context.Canceled):
		return &Error{Kind: KindClientGone, Detail: "the client went away while sending the body", Err: err}
	}
	return &Error{Kind: KindBadRequest, Detail: "could not read the request body", Err: err}
}

// BudgetStats describes the memory budget for request bodies at one moment;
// its Limit is Options.MaxInflightBytes.
type BudgetStats = heldbody.Stats

// BodyBudget reports the memory budget's state. Safe for concurrent use.
func (p *Proxy) BodyBudget() BudgetStats { return p.budget.Stats() }
