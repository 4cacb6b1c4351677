package emulator

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"khproxy/emulator/apiauth"
)

// call is one authenticated request on its way through a handler.
type call struct {
	r         *http.Request
	reqID     string
	key       *apiauth.Principal
	id        int64 // {id} path parameter, 0 if none
	body      []byte
	idemKey   string
	serverNow time.Time
}

// HeaderEmulator is set to "1" on every answer of the emulator, so that a
// log or a recorded response never passes for the real API's.
const HeaderEmulator = "X-KH-Emulator"

// ServeHTTP answers one request; see the package documentation for the
// order of checks. Requests under ControlPath go to the control endpoint
// (unless Options.NoControl) before any of them.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderEmulator, "1")
	if !e.noControl && strings.HasPrefix(rawTarget(r), ControlPath) {
		e.serveControl(w, r)
		return
	}
	start := e.now()
	reqID := newULID(start)
	routePath, signedPath, inBase := e.splitTarget(rawTarget(r))
	var rt *route
	var id int64
	var allow []string
	if inBase {
		rt, id, allow = matchRoute(r.Method, routePath)
	}
	e.count(r.Method, rt, inBase && (rt != nil || len(allow) > 0))

	if ae := e.takeFail(); ae != nil {
		e.write(w, r, reqID, errorResponse(reqID, ae), start, "")
		return
	}
	delay := e.takeDelay()
	resp, ticket, committed, keyID := e.process(r, reqID, rt, id, allow, inBase, signedPath)
	defer ticket.finish(nil) // releases the claim if anything below goes wrong
	if delay > 0 {
		e.wait(delay, r.Context().Done())
	}
	var after afterCommit
	if committed {
		after = e.takeAfterCommit()
	}
	if after.slow > 0 {
		// The server has not noticed a client that left: the key stays in
		// progress for the whole wait.
		e.wait(after.slow, nil)
	}
	ticket.finish(resp)
	switch {
	case after.drop:
		e.log.LogAttrs(r.Context(), slog.LevelInfo, "dropping connection after commit (fault)",
			slog.String("request_id", reqID), slog.String("key", keyID))
		dropConnection(w)
		return
	case after.fail:
		e.log.LogAttrs(r.Context(), slog.LevelInfo, "answering 500 after commit (fault)",
			slog.String("request_id", reqID), slog.String("key", keyID))
		resp = failedAfterCommit(reqID)
	}
	if r.Context().Err() != nil {
		return
	}
	e.write(w, r, reqID, resp, start, keyID)
}

// wait waits d, or less when gone is closed or the emulator closes.
func (e *Emulator) wait(d time.Duration, gone <-chan struct{}) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-gone:
	case <-e.closing:
	}
}

// process runs everything after the fail fault: per-IP limit, health,
// authentication, per-key limit, routing, scope, idempotency, handler.
func (e *Emulator) process(r *http.Request, reqID string, rt *route, id int64, allow []string, inBase bool, signedPath string) (*response, *idemTicket, bool, string) {
	if ae := e.limiter.takeIP(r.RemoteAddr, e.now()); ae != nil {
		return errorResponse(reqID, ae), nil, false, ""
	}
	if !inBase {
		return errorResponse(reqID, notFound("No such endpoint.")), nil, false, ""
	}
	serverNow := e.serverNow()
	if rt != nil && rt.scope == scopePublic {
		return rt.handler(e, &call{r: r, reqID: reqID, serverNow: serverNow}), nil, false, ""
	}
	ks, body, ae := e.authenticate(r, signedPath, serverNow)
	if ae != nil {
		return errorResponse(reqID, ae), nil, false, ""
	}
	rlHeader, ae := e.limiter.takeKey(ks.ID, e.now())
	resp, ticket, committed := e.dispatch(r, reqID, ks, body, rt, id, allow, serverNow, ae)
	for k, v := range rlHeader {
		resp.header[k] = v
	}
	return resp, ticket, committed, ks.ID
}

func (e *Emulator) dispatch(r *http.Request, reqID string, ks *apiauth.Principal, body []byte, rt *route, id int64, allow []string, serverNow time.Time, rateErr *apiError) (*response, *idemTicket, bool) {
	if rateErr != nil {
		return errorResponse(reqID, rateErr), nil, false
	}
	if rt == nil {
		if len(allow) > 0 {
			return errorResponse(reqID, &apiError{code: codeMethodNotAllowed,
				detail: "Method " + r.Method + " is not allowed here.",
				header: http.Header{"Allow": {strings.Join(allow, ", ")}}}), nil, false
		}
		return errorResponse(reqID, notFound("No such endpoint.")), nil, false
	}
	if rt.scope != scopeAny && !ks.Allows(rt.scope) {
		return errorResponse(reqID, &apiError{code: codeForbidden, reason: "missing_scope",
			detail: "This key lacks the scope " + rt.scope + "."}), nil, false
	}
	c := &call{r: r, reqID: reqID, key: ks, id: id, body: body, serverNow: serverNow}
	if !rt.idempotent {
		resp := rt.handler(e, c)
		return resp, nil, rt.write && resp.status/100 == 2
	}
	vals := r.Header.Values(HeaderIdempotencyKey)
	switch {
	case len(vals) == 0 || vals[0] == "":
		return errorResponse(reqID, validationError(HeaderIdempotencyKey, "required for this endpoint")), nil, false
	case len(vals) > 1 || !idemKeyPattern.MatchString(vals[0]):
		return errorResponse(reqID, validationError(HeaderIdempotencyKey, "must match ^[A-Za-z0-9_.-]{1,80}$")), nil, false
	}
	c.idemKey = vals[0]
	ticket, replay, ae := e.idem.begin(r.Context(), e.closing, ks.ID, c.idemKey,
		fingerprint(r.Method, rt.pattern+"#"+strconv.FormatInt(id, 10), body), e.now)
	if ae != nil {
		return errorResponse(reqID, ae), nil, false
	}
	if replay != nil {
		replay.header.Set(HeaderReplayed, "true")
		withRequestID(replay, reqID)
		return replay, nil, false
	}
	defer func() {
		if v := recover(); v != nil {
			ticket.finish(nil) // a panicking handler must not lock the key
			panic(v)
		}
	}()
	resp := rt.handler(e, c)
	return resp, ticket, resp.status/100 == 2
}

// write sends resp with X-Request-Id, Date (server clock) and
// Content-Length, and logs the request.
func (e *Emulator) write(w http.ResponseWriter, r *http.Request, reqID string, resp *response, start time.Time, keyID string) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	h.Set("X-Request-Id", reqID)
	h.Set("Date", e.serverNow().UTC().Format(http.TimeFormat))
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
	e.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("request_id", reqID), slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.Int("status", resp.status),
		slog.String("key", keyID), slog.Duration("duration", e.now().Sub(start)))
}

// rawTarget returns the request-target as sent on the wire.
func rawTarget(r *http.Request) string {
	t := r.RequestURI
	if t == "" {
		t = r.URL.RequestURI()
	}
	if i := strings.Index(t, "://"); i >= 0 && !strings.HasPrefix(t, "/") { // absolute-form
		rest := t[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			t = rest[j:]
		} else if j := strings.IndexByte(rest, '?'); j >= 0 {
			t = "/" + rest[j:]
		} else {
			t = "/"
		}
	}
	return t
}

// splitTarget strips the base path. routePath is the path after it,
// without the query; signed is the signed PATH with the raw query: the
// target after the base path, or with SignedPathFull the whole target.
func (e *Emulator) splitTarget(raw string) (routePath, signed string, ok bool) {
	if !strings.HasPrefix(raw, e.basePath+"/") {
		return "", "", false
	}
	signed = raw[len(e.basePath):]
	routePath = signed
	if i := strings.IndexByte(routePath, '?'); i >= 0 {
		routePath = routePath[:i]
	}
	if e.signFull {
		signed = raw
	}
	return routePath, signed, true
}

// The values of Options.SignedPath and -signed-path.
const (
	SignedPathV1   = "v1"
	SignedPathFull = "full"
)

func (e *Emulator) count(method string, rt *route, known bool) {
	k := "other"
	if rt != nil {
		k = rt.method + " " + rt.pattern
	} else if known {
		k = "method not allowed" // not the method: clients choose it freely
	}
	e.mu.Lock()
	e.requests[k]++
	e.mu.Unlock()
}

// Requests returns how many requests reached the emulator per route,
// keyed like "POST /v1/orders" or "GET /v1/services/{id}"; unknown paths
// count under "other", known paths with another method under "method not
// allowed". Faulted and rejected requests count too. The map is
// a copy; safe for concurrent use.
func (e *Emulator) Requests() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.requests))
	for k, v := range e.requests {
		out[k] = v
	}
	return out
}
