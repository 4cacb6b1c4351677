package proxy

import (
	"context"
	"net/http"

	"khproxy/proxy/flight"
)

// A request with an automatic Idempotency-Key joins the flight registry
// (package flight says the rules): as the leader it is sent upstream and its
// response captured for a retry that claims it; as a follower it waits for
// the abandoned request it claimed and is answered with that one's answer.

// RetryMemory remembers, for a while, the Idempotency-Key of automatic-key
// requests whose answer did not reach their caller (fingerprint -> key), so
// that the caller's identical retry reuses it. ratelimit.RetryMemory
// implements it, in process or shared through Redis. Implementations are
// safe for concurrent use, never fail, and should answer quickly: the
// flight registry calls them under its lock. It is flight.RetryMemory,
// named here for Options.
type RetryMemory = flight.RetryMemory

// FlightBoard shares the automatic-key requests in flight with other
// replicas; ratelimit.FlightBoard implements it on Redis. It is
// flight.Board, named here for Options.
type FlightBoard = flight.Board

// captureLimit bounds the copy of a leader's response kept for followers.
// Larger answers are not shared; followers then ask the API with the same key.
const captureLimit = 1 << 20

// joinFlight makes r the leader of its flight, or lets it wait for the
// abandoned identical request it claimed and answers with that one's
// result. It returns whether r must be sent upstream by the caller, with its
// flight.
func (p *Proxy) joinFlight(ctx context.Context, w *recorder, r *http.Request, ex *exchange) (*flight.Flight, bool) {
	fp := flight.Fingerprint(r.Method, ex.target, ex.bodyHash)
	own := ex.idemKey
	for {
		f, leader, err := p.flights.Join(ctx, fp, own)
		if err != nil {
			p.fail(w, r, ex, err)
			return nil, false
		}
		ex.idemKey, ex.keySource = f.Key(), KeyAuto
		if !leader || f.Key() != own {
			ex.keySource = KeyReused
		}
		r.Header.Set("Idempotency-Key", f.Key())
		if leader {
			return f, true
		}
		select {
		case <-f.Done():
		case <-ctx.Done():
			p.flights.Unclaim(f)
			p.fail(w, r, ex, ctx.Err())
			return nil, false
		}
		switch {
		case f.Delivered():
			// Its caller got the answer after all: r is not its retry
			// but a purchase of its own.
			continue
		case f.Answer() != nil:
			p.replayShared(w, r, ex, f)
			return nil, false
		default:
			// The request is still in doubt (no final answer within
			// its budget), or its answer was not kept whole: ask the
			// API with its key, which settles it or replays its
			// stored answer. Never hand on an in-doubt answer.
			return p.flights.Start(fp, f.Key()), true
		}
	}
}

// replayShared answers r with the result of the flight it claimed.
func (p *Proxy) replayShared(w *recorder, r *http.Request, ex *exchange, f *flight.Flight) {
	a := f.Answer()
	ex.shared = true
	ex.upstreamStatus = a.Status
	ex.apiRequestID = a.Header.Get("X-Request-Id")
	w.replay(a)
	if !w.finish(r.Context()) {
		p.flights.Keep(f)
	}
}

// endFlight ends a leader's flight once its answer was written (or not).
// Only a settling answer of the API (ex.err is nil: khproxy turns every
// other into in_doubt) ends the key's life: when it reached the caller, the
// key is done; when it did not, the key is kept for the caller's retry, and
// a retry that claimed the flight gets the answer. An in-doubt request
// hands on nothing but its key.
func (p *Proxy) endFlight(f *flight.Flight, ex *exchange, rec *recorder, aborted bool) {
	settled := !aborted && ex.err == nil && ex.upstreamStatus >= 200 && ex.upstreamStatus < 500
	delivered := settled && rec.err == nil
	var result *flight.Answer
	if settled && !rec.overflow && rec.status != 0 {
		result = &flight.Answer{Status: rec.status, Header: rec.header, Body: rec.capture.Bytes()}
	}
	p.flights.Finish(f, delivered, result)
}
