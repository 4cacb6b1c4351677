package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"khproxy/proxy/heldbody"
)

// readBody reads the whole request body into memory paid for by the budget,
// and hashes it. Nothing is read before its room is reserved: by
// Content-Length in one go, or piece by piece for a chunked body.
func (p *Proxy) readBody(w *recorder, r *http.Request, ex *exchange) error {
	h := heldbody.New(p.budget)
	ex.body = h
	defer p.receiving(w)()
	var err error
	switch {
	case r.ContentLength > p.maxBody:
		err = &http.MaxBytesError{Limit: p.maxBody}
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
		ex.refusedUnread = errors.As(err, &mbe) || errors.Is(err, heldbody.ErrNeverFits) || errors.Is(err, heldbody.ErrNoRoom)
		return p.bodyError(err)
	}
	ex.bodyHash = h.Hash()
	return nil
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
