package emulator

import (
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"khproxy/emulator/apiauth"
)

// call is one request on its way through the emulator, from the target
// to the answer: what ServeHTTP reads from the target, what
// authentication adds, and what the handler leaves for the after-commit
// faults. Like the state httputil.ReverseProxy keeps per request, it
// replaces long parameter lists; one goroutine owns it.
type call struct {
	r     *http.Request
	reqID string
	start time.Time // when the request arrived (e.now), for the log

	// From the target.
	inBase     bool     // the target is under the base path
	signedPath string   // the PATH the signature covers (see splitTarget)
	route      *route   // nil: no route for this method and path
	id         int64    // {id} path parameter, 0 if none
	allow      []string // the path's methods when only the path matched

	// From process: the server clock (also on public routes), then what
	// authentication adds (key and body stay empty on public routes) and
	// the Idempotency-Key dispatch accepted.
	serverNow time.Time
	key       *apiauth.Principal
	body      []byte
	idemKey   string

	// The outcome.
	ticket    *idemTicket // the Idempotency-Key claim to settle; nil if none
	committed bool        // the handler changed state: after-commit faults apply
}

// newCall starts the call for r: its request ID and what its target
// names. It counts the request in Requests.
func (e *Emulator) newCall(r *http.Request) *call {
	start := e.now()
	c := &call{r: r, reqID: newULID(start), start: start}
	var routePath string
	routePath, c.signedPath, c.inBase = e.splitTarget(rawTarget(r))
	if c.inBase {
		c.route, c.id, c.allow = matchRoute(r.Method, routePath)
	}
	e.count(r.Method, c.route, c.inBase && (c.route != nil || len(c.allow) > 0))
	return c
}

// fail answers c with ae.
func (c *call) fail(ae *apiError) *response { return errorResponse(c.reqID, ae) }

// keyID is the ID of the authenticated key, "" before authentication.
func (c *call) keyID() string {
	if c.key == nil {
		return ""
	}
	return c.key.ID
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
	c := e.newCall(r)
	if ae := e.takeFail(); ae != nil {
		e.write(w, c, c.fail(ae))
		return
	}
	delay := e.takeDelay()
	// Releases the claim if anything below goes wrong, a panicking
	// handler included: a claim must not lock its key.
	defer func() { c.ticket.finish(nil) }()
	resp := e.process(c)
	if delay > 0 {
		e.wait(delay, r.Context().Done())
	}
	var after afterCommit
	if c.committed {
		after = e.takeAfterCommit()
	}
	if after.slow > 0 {
		// The server has not noticed a client that left: the key stays in
		// progress for the whole wait.
		e.wait(after.slow, nil)
	}
	c.ticket.finish(resp)
	switch {
	case after.drop:
		e.log.LogAttrs(r.Context(), slog.LevelInfo, "dropping connection after commit (fault)",
			slog.String("request_id", c.reqID), slog.String("key", c.keyID()))
		dropConnection(w)
		return
	case after.fail:
		e.log.LogAttrs(r.Context(), slog.LevelInfo, "answering 500 after commit (fault)",
			slog.String("request_id", c.reqID), slog.String("key", c.keyID()))
		resp = failedAfterCommit(c.reqID)
	}
	if r.Context().Err() != nil {
		return
	}
	e.write(w, c, resp)
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
// authentication, per-key limit, then dispatch.
func (e *Emulator) process(c *call) *response {
	if ae := e.limiter.takeIP(c.r.RemoteAddr, e.now()); ae != nil {
		return c.fail(ae)
	}
	if !c.inBase {
		return c.fail(notFound("No such endpoint."))
	}
	c.serverNow = e.serverNow()
	if c.route != nil && c.route.scope == scopePublic {
		return c.route.handler(e, c)
	}
	key, body, ae := e.authenticate(c.r, c.signedPath, c.serverNow)
	if ae != nil {
		return c.fail(ae)
	}
	c.key, c.body = key, body
	rlHeader, ae := e.limiter.takeKey(c.key.ID, e.now())
	var resp *response
	if ae != nil {
		resp = c.fail(ae)
	} else {
		resp = e.dispatch(c)
	}
	for k, v := range rlHeader {
		resp.header[k] = v
	}
	return resp
}

// dispatch runs an authenticated call within its key's rate limit:
// routing, scope, Idempotency-Key, handler. It sets c.ticket when the
// handler runs under an idempotency claim and c.committed when the
// handler changed state.
func (e *Emulator) dispatch(c *call) *response {
	rt := c.route
	if rt == nil {
		if len(c.allow) > 0 {
			return c.fail(&apiError{code: codeMethodNotAllowed,
				detail: "Method " + c.r.Method + " is not allowed here.",
				header: http.Header{"Allow": {strings.Join(c.allow, ", ")}}})
		}
		return c.fail(notFound("No such endpoint."))
	}
	if rt.scope != scopeAny && !c.key.Allows(rt.scope) {
		return c.fail(&apiError{code: codeForbidden, reason: "missing_scope",
			detail: "This key lacks the scope " + rt.scope + "."})
	}
	if !rt.idempotent {
		resp := rt.handler(e, c)
		c.committed = rt.write && resp.status/100 == 2
		return resp
	}
	vals := c.r.Header.Values(HeaderIdempotencyKey)
	switch {
	case len(vals) == 0 || vals[0] == "":
		return c.fail(validationError(HeaderIdempotencyKey, "required for this endpoint"))
	case len(vals) > 1 || !idemKeyPattern.MatchString(vals[0]):
		return c.fail(validationError(HeaderIdempotencyKey, "must match ^[A-Za-z0-9_.-]{1,80}$"))
	}
	c.idemKey = vals[0]
	ticket, replay, ae := e.idem.begin(c.r.Context(), e.closing, c.key.ID, c.idemKey,
		fingerprint(c.r.Method, rt.pattern+"#"+strconv.FormatInt(c.id, 10), c.body), e.now)
	if ae != nil {
		return c.fail(ae)
	}
	if replay != nil {
		replay.header.Set(HeaderReplayed, "true")
		withRequestID(replay, c.reqID)
		return replay
	}
	c.ticket = ticket // settled by ServeHTTP, also when the handler panics
	resp := rt.handler(e, c)
	c.committed = resp.status/100 == 2
	return resp
}

// write sends resp with X-Request-Id, Date (server clock) and
// Content-Length, and logs the request.
func (e *Emulator) write(w http.ResponseWriter, c *call, resp *response) {
	h := w.Header()
	for k, v := range resp.header {
		h[k] = v
	}
	h.Set("X-Request-Id", c.reqID)
	h.Set("Date", e.serverNow().UTC().Format(http.TimeFormat))
	h.Set("Content-Length", strconv.Itoa(len(resp.body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
	e.log.LogAttrs(c.r.Context(), slog.LevelInfo, "request",
		slog.String("request_id", c.reqID), slog.String("method", c.r.Method),
		slog.String("path", c.r.URL.Path), slog.Int("status", resp.status),
		slog.String("key", c.keyID()), slog.Duration("duration", e.now().Sub(c.start)))
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
	return copyCounts(e.requests)
}

// copyCounts returns a copy of m, never nil (a copy of no counts encodes
// as {} in the control state, not null).
func copyCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	maps.Copy(out, m)
	return out
}
