package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"khproxy/problem"
)

// ControlPath is the prefix of the control endpoint, on the emulator's own
// port and outside the API's base path, for tests in any language. It is
// not authenticated: the emulator is a local test double (keep it on
// loopback, or set Options.NoControl / -no-control). Every answer is JSON;
// errors are problem+json with type ControlProblemType. Routes:
//
//	GET  /__emulator/state                      keys, accounts, faults, injected faults, lifecycle, queues
//	GET  /__emulator/faults                     the faults, with remaining counts
//	PUT  /__emulator/faults                     replace them (absent fields are zero)
//	GET  /__emulator/in-progress                {"in_progress":"409"} or "replay" (see InProgress)
//	PUT  /__emulator/in-progress                change it
//	GET  /__emulator/orders                     every order: id, label, idempotency_key, key_id, status
//	GET  /__emulator/lifecycle                  the lifecycle timing
//	PUT  /__emulator/lifecycle                  replace it
//	POST /__emulator/advance                    run every waiting lifecycle step
//	POST /__emulator/reset                      back to the initial state (Emulator.Reset)
//	POST /__emulator/keys                       new key {"account","scopes","allow_ips"} -> 201 {"id","secret",...}
//	PUT  /__emulator/accounts/{id}              {"client_not_found":true}: orders get 402 client_not_found
//	POST /__emulator/keys/{id}/lock             lock the key (401 unknown_or_locked_key)
//	POST /__emulator/keys/{id}/unlock           unlock it
//	POST /__emulator/keys/{id}/rotate-secret    new secret ({"secret":"..."} or generated)
//	PUT  /__emulator/keys/{id}/scopes           {"scopes":"all"} or {"scopes":["read:products",...]}
//	PUT  /__emulator/keys/{id}/allow-ips        {"allow_ips":["203.0.113.0/24"]} ([] for any)
//	PUT  /__emulator/card                       {"card":"declining","account":"acct_default"}
//	GET  /__emulator/webhooks                   finished deliveries
//	POST /__emulator/webhooks/redeliver         {"event_id":"evt_..."}: send it again
//
// Durations are Go duration strings ("1.5s", "2m").
const ControlPath = "/__emulator/"

// ControlProblemType is the problem type of the control endpoint's errors,
// distinct from the API's error types.
const ControlProblemType = "urn:khproxy:emulator:control"

// controlError is a refused control request.
type controlError struct {
	status int
	detail string
	allow  string // for 405
}

func badControl(format string, args ...any) *controlError {
	return &controlError{status: http.StatusBadRequest, detail: fmt.Sprintf(format, args...)}
}

// serveControl answers one request under ControlPath. It takes no part in
// faults, rate limits, authentication or request counting.
func (e *Emulator) serveControl(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(rawTarget(r), ControlPath)
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	var v any
	var ce *controlError
	if err != nil {
		ce = badControl("could not read the body")
	} else {
		v, ce = e.control(r.Method, strings.Split(path, "/"), body)
	}
	e.log.LogAttrs(r.Context(), slog.LevelInfo, "control", slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.Bool("ok", ce == nil))
	w.Header().Set("Cache-Control", "no-store")
	if ce != nil {
		if ce.allow != "" {
			w.Header().Set("Allow", ce.allow)
		}
		problem.Write(w, problem.Details{Type: ControlProblemType, Status: ce.status, Detail: ce.detail})
		return
	}
	status := http.StatusOK
	if c, ok := v.(created); ok {
		v, status = c.v, http.StatusCreated
	}
	out, _ := json.Marshal(v) // plain maps and slices
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(out, '\n'))
}

// controlRoute is one route of the control endpoint.
type controlRoute struct {
	method  string
	pattern string // segments after ControlPath; {id} matches one segment
	handle  func(e *Emulator, id string, body []byte) (any, *controlError)
}

var controlRoutes = []controlRoute{
	{"GET", "state", func(e *Emulator, _ string, _ []byte) (any, *controlError) { return e.controlState(), nil }},
	{"GET", "faults", func(e *Emulator, _ string, _ []byte) (any, *controlError) { return faultsToJSON(e.Faults()), nil }},
	{"PUT", "faults", (*Emulator).controlSetFaults},
	{"GET", "in-progress", func(e *Emulator, _ string, _ []byte) (any, *controlError) {
		return map[string]string{"in_progress": string(e.InProgress())}, nil
	}},
	{"PUT", "in-progress", (*Emulator).controlSetInProgress},
	{"GET", "orders", func(e *Emulator, _ string, _ []byte) (any, *controlError) { return ordersToJSON(e.Orders()), nil }},
	{"GET", "lifecycle", func(e *Emulator, _ string, _ []byte) (any, *controlError) { return lifecycleToJSON(e.Lifecycle()), nil }},
	{"PUT", "lifecycle", (*Emulator).controlSetLifecycle},
	{"POST", "advance", func(e *Emulator, _ string, _ []byte) (any, *controlError) {
		return map[string]int{"ran": e.Advance(), "pending": e.PendingSteps()}, nil
	}},
	{"POST", "reset", func(e *Emulator, _ string, _ []byte) (any, *controlError) {
		e.Reset()
		return map[string]bool{"reset": true}, nil
	}},
	{"POST", "keys", (*Emulator).controlNewKey},
	{"PUT", "accounts/{id}", (*Emulator).controlAccount},
	{"POST", "keys/{id}/lock", func(e *Emulator, id string, _ []byte) (any, *controlError) {
		return e.controlKey(id, e.LockKey(id, true))
	}},
	{"POST", "keys/{id}/unlock", func(e *Emulator, id string, _ []byte) (any, *controlError) {
		return e.controlKey(id, e.LockKey(id, false))
	}},
	{"POST", "keys/{id}/rotate-secret", (*Emulator).controlRotate},
	{"PUT", "keys/{id}/scopes", (*Emulator).controlScopes},
	{"PUT", "keys/{id}/allow-ips", (*Emulator).controlAllowIPs},
	{"PUT", "card", (*Emulator).controlCard},
	{"GET", "webhooks", func(e *Emulator, _ string, _ []byte) (any, *controlError) {
		return deliveriesToJSON(e.WebhookDeliveries()), nil
	}},
	{"POST", "webhooks/redeliver", (*Emulator).controlRedeliver},
}

// control routes one request by method and path segments.
func (e *Emulator) control(method string, segs []string, body []byte) (any, *controlError) {
	var allow []string
	for _, rt := range controlRoutes {
		id, ok := matchControl(rt.pattern, segs)
		if !ok {
			continue
		}
		if rt.method == method {
			return rt.handle(e, id, body)
		}
		allow = append(allow, rt.method)
	}
	if allow != nil {
		return nil, &controlError{status: http.StatusMethodNotAllowed, allow: strings.Join(allow, ", "),
			detail: "Method " + method + " is not allowed here."}
	}
	return nil, &controlError{status: http.StatusNotFound, detail: "No such control route; see docs/emulator.md, Control endpoint."}
}

func matchControl(pattern string, segs []string) (string, bool) {
	ps := strings.Split(pattern, "/")
	if len(ps) != len(segs) {
		return "", false
	}
	id := ""
	for i, p := range ps {
		switch {
		case p == "{id}" && segs[i] != "":
			id = segs[i]
		case p != segs[i]:
			return "", false
		}
	}
	return id, true
}

// decodeControl decodes body (empty means {}) into v, refusing unknown
// fields so that a typo does not silently mean zero.
func decodeControl(body []byte, v any) *controlError {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badControl("bad JSON body: %v", err)
	}
	return nil
}

// duration is a time.Duration written as a Go duration string in JSON.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`durations are strings such as "1.5s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

type faultsJSON struct {
	DropAfterCommit      int              `json:"drop_after_commit"`
	FailAfterCommit      int              `json:"fail_after_commit"`
	SlowAfterCommit      duration         `json:"slow_after_commit"`
	SlowAfterCommitCount int              `json:"slow_after_commit_count"`
	Delay                duration         `json:"delay"`
	DelayCount           int              `json:"delay_count"`
	FailCount            int              `json:"fail_count"`
	FailStatus           int              `json:"fail_status"`
	RetryAfter           duration         `json:"retry_after"`
	ClockOffset          duration         `json:"clock_offset"`
	DuplicateWebhooks    int              `json:"duplicate_webhooks"`
	Random               randomFaultsJSON `json:"random"`
}

type randomFaultsJSON struct {
	Unavailable     float64  `json:"unavailable"`
	RateLimited     float64  `json:"rate_limited"`
	DropAfterCommit float64  `json:"drop_after_commit"`
	FailAfterCommit float64  `json:"fail_after_commit"`
	SlowAfterCommit float64  `json:"slow_after_commit"`
	SlowDelay       duration `json:"slow_delay"`
	ClockStep       duration `json:"clock_step"`
	ClockEvery      duration `json:"clock_every"`
	ClockMax        duration `json:"clock_max"`
	Seed            uint64   `json:"seed"`
}

func faultsToJSON(f Faults) faultsJSON {
	r := f.Random
	return faultsJSON{
		DropAfterCommit: f.DropAfterCommit, FailAfterCommit: f.FailAfterCommit,
		SlowAfterCommit: duration(f.SlowAfterCommit), SlowAfterCommitCount: f.SlowAfterCommitCount,
		Delay: duration(f.Delay), DelayCount: f.DelayCount, FailCount: f.FailCount, FailStatus: f.FailStatus,
		RetryAfter: duration(f.RetryAfter), ClockOffset: duration(f.ClockOffset), DuplicateWebhooks: f.DuplicateWebhooks,
		Random: randomFaultsJSON{
			Unavailable: r.Unavailable, RateLimited: r.RateLimited,
			DropAfterCommit: r.DropAfterCommit, FailAfterCommit: r.FailAfterCommit, SlowAfterCommit: r.SlowAfterCommit,
			SlowDelay: duration(r.SlowDelay), ClockStep: duration(r.ClockStep), ClockEvery: duration(r.ClockEvery),
			ClockMax: duration(r.ClockMax), Seed: r.Seed,
		},
	}
}

func (j faultsJSON) faults() Faults {
	r := j.Random
	return Faults{
		DropAfterCommit: j.DropAfterCommit, FailAfterCommit: j.FailAfterCommit,
		SlowAfterCommit: time.Duration(j.SlowAfterCommit), SlowAfterCommitCount: j.SlowAfterCommitCount,
		Delay: time.Duration(j.Delay), DelayCount: j.DelayCount, FailCount: j.FailCount, FailStatus: j.FailStatus,
		RetryAfter: time.Duration(j.RetryAfter), ClockOffset: time.Duration(j.ClockOffset), DuplicateWebhooks: j.DuplicateWebhooks,
		Random: RandomFaults{
			Unavailable: r.Unavailable, RateLimited: r.RateLimited,
			DropAfterCommit: r.DropAfterCommit, FailAfterCommit: r.FailAfterCommit, SlowAfterCommit: r.SlowAfterCommit,
			SlowDelay: time.Duration(r.SlowDelay), ClockStep: time.Duration(r.ClockStep), ClockEvery: time.Duration(r.ClockEvery),
			ClockMax: time.Duration(r.ClockMax), Seed: r.Seed,
		},
	}
}

func (e *Emulator) controlSetFaults(_ string, body []byte) (any, *controlError) {
	var j faultsJSON
	if ce := decodeControl(body, &j); ce != nil {
		return nil, ce
	}
	if err := e.SetFaults(j.faults()); err != nil {
		return nil, badControl("%v", err)
	}
	return faultsToJSON(e.Faults()), nil
}

func (e *Emulator) controlSetInProgress(_ string, body []byte) (any, *controlError) {
	var j struct {
		InProgress string `json:"in_progress"`
	}
	if ce := decodeControl(body, &j); ce != nil {
		return nil, ce
	}
	if err := e.SetInProgress(InProgress(j.InProgress)); err != nil {
		return nil, badControl("in_progress: %v", err)
	}
	return map[string]string{"in_progress": string(e.InProgress())}, nil
}

// ordersToJSON lists every order with what a test needs to count them
// per purchase: the label and the Idempotency-Key it was placed with.
func ordersToJSON(os []Order) map[string]any {
	out := make([]map[string]any, 0, len(os))
	for _, o := range os {
		var label any
		if o.Label != "" {
			label = o.Label
		}
		out = append(out, map[string]any{"id": o.ID, "label": label, "idempotency_key": o.IdempotencyKey,
			"key_id": o.KeyID, "account": o.Account, "status": o.Status, "created_at": rfc3339(o.CreatedAt)})
	}
	return map[string]any{"orders": out}
}

type lifecycleJSON struct {
	PaymentDelay   duration `json:"payment_delay"`
	ProvisionDelay duration `json:"provision_delay"`
	ActionDelay    duration `json:"action_delay"`
	Manual         bool     `json:"manual"`
}

func lifecycleToJSON(l Lifecycle) lifecycleJSON {
	return lifecycleJSON{duration(l.PaymentDelay), duration(l.ProvisionDelay), duration(l.ActionDelay), l.Manual}
}

func (e *Emulator) controlSetLifecycle(_ string, body []byte) (any, *controlError) {
	var j lifecycleJSON
	if ce := decodeControl(body, &j); ce != nil {
		return nil, ce
	}
	l := Lifecycle{time.Duration(j.PaymentDelay), time.Duration(j.ProvisionDelay), time.Duration(j.ActionDelay), j.Manual}
	if err := e.SetLifecycle(l); err != nil {
		return nil, badControl("%v", err)
	}
	return lifecycleToJSON(e.Lifecycle()), nil
}

// controlKey answers a key change with the key's view, or its error.
func (e *Emulator) controlKey(id string, err error) (any, *controlError) {
	switch {
	case errors.Is(err, ErrUnknownKey):
		return nil, &controlError{status: http.StatusNotFound, detail: err.Error()}
	case err != nil:
		return nil, badControl("%v", err)
	}
	k, _ := e.auth.Get(id)
	e.mu.Lock()
	defer e.mu.Unlock()
	return keyView(k, e.hookURLs[id]), nil
}

// keyView is a key and its webhook URL ("" for none) as the control
// endpoint shows them.
func keyView(ks Key, url string) map[string]any {
	ips := make([]string, 0, len(ks.AllowIPs))
	for _, p := range ks.AllowIPs {
		ips = append(ips, p.String())
	}
	var hook any
	if url != "" {
		hook = url
	}
	return map[string]any{"id": ks.ID, "account": ks.Account, "scopes": slices.Sorted(slices.Values(ks.Scopes)),
		"locked": ks.Locked, "allow_ips": ips, "webhook_url": hook}
}

func (e *Emulator) controlRotate(id string, body []byte) (any, *controlError) {
	var j struct {
		Secret string `json:"secret"`
	}
	if ce := decodeControl(body, &j); ce != nil {
		return nil, ce
	}
	secret, err := e.RotateSecret(id, j.Secret)
	if _, ce := e.controlKey(id, err); ce != nil {
		return nil, ce
	}
	return map[string]string{"id": id, "secret": secret}, nil
}

// controlScopes takes {"scopes": "all"} (any ParseScopes form) or a list.
func (e *Emulator) controlScopes(id string, body []byte) (any, *controlError) {
	var j struct {
		Scopes json.RawMessage `json:"scopes"`
	}
	if ce := decodeControl(body, &j); ce != nil {
		return nil, ce
	}
	scopes, ce := scopesFromJSON(j.Scopes)
	if ce != nil {
		return nil, ce
	}
	return e.controlKey(id, e.SetScopes(id, scopes))
}

func (e *Emulator) controlAllowIPs(id string, body []byte) (any, *controlError) {
	var j struct {
		AllowIPs []string `json:"allow_ips"`
	}
	if ce := decodeControl(body, &j); ce != nil {
		return nil, ce
	}
	prefixes, err := ParseAllowIPs(strings.Join(j.AllowIPs, ","))
	if err != nil {
		return nil, badControl("allow_ips: %v", err)
	}
	return e.controlKey(id, e.SetAllowIPs(id, prefixes))
}

func (e *Emulator) controlCard(_ string, body []byte) (any, *controlError) {
	var j struct {
		Account string `json:"account"`
		Card    string `json:"card"`
	}
	if ce := decodeControl(body, &j); ce != nil {
		return nil, ce
	}
	if err := e.SetCard(j.Account, Card(j.Card)); err != nil {
		return nil, badControl("%v", err)
	}
	if j.Account == "" {
		j.Account = DefaultAccount
	}
	c, _ := ParseCard(j.Card)
	return map[string]string{"account": j.Account, "card": string(c)}, nil
}

func deliveriesToJSON(ds []WebhookDelivery) []map[string]any {
	out := make([]map[string]any, 0, len(ds))
	for _, d := range ds {
		out = append(out, map[string]any{"event_id": d.EventID, "type": d.Type, "url": d.URL,
			"attempts": d.Attempts, "status_code": d.StatusCode, "delivered": d.Delivered,
			"error": d.Error, "duplicate": d.Duplicate, "body": json.RawMessage(d.Body)})
	}
	return out
}

func (e *Emulator) controlRedeliver(_ string, body []byte) (any, *controlError) {
	var j struct {
		EventID string `json:"event_id"`
	}
	if ce := decodeControl(body, &j); ce != nil {
		return nil, ce
	}
	n, err := e.Redeliver(j.EventID)
	if err != nil {
		return nil, &controlError{status: http.StatusNotFound, detail: err.Error()}
	}
	return map[string]int{"queued": n}, nil
}

// controlState is GET /__emulator/state.
func (e *Emulator) controlState() map[string]any {
	e.mu.Lock()
	all := e.auth.Keys()
	keys := make([]map[string]any, 0, len(all))
	for _, k := range all {
		keys = append(keys, keyView(k, e.hookURLs[k.ID]))
	}
	accounts := make([]map[string]any, 0, len(e.accounts))
	for _, id := range slices.Sorted(maps.Keys(e.accounts)) {
		accounts = append(accounts, e.accountView(e.accounts[id]))
	}
	orders := len(e.orders)
	e.mu.Unlock()
	schedule := e.hooks.Retries()
	retries := make([]duration, 0, len(schedule))
	for _, d := range schedule {
		retries = append(retries, duration(d))
	}
	return map[string]any{
		"keys": keys, "accounts": accounts, "orders": orders,
		"faults": faultsToJSON(e.Faults()), "injected_faults": e.InjectedFaults(),
		"in_progress": string(e.InProgress()), "lifecycle": lifecycleToJSON(e.Lifecycle()),
		"pending_steps": e.PendingSteps(), "pending_webhooks": e.PendingWebhooks(),
		"webhook_deliveries": len(e.WebhookDeliveries()), "webhook_retries": retries,
	}
}
