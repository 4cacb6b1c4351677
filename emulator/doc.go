// Package emulator is an in-process emulator of the KernelHost Reseller
// API (see shared/spec/kernelhost-reseller-api.md), built as an
// integration-test double. An *Emulator is an http.Handler that judges
// request signatures like the real API (with its own code, not khproxy's
// signer), keeps orders, services, invoices and balances in memory, runs
// them through a lifecycle, sends signed webhooks, and produces on demand
// the failures an app must handle. It backs "khproxy demo", "khproxy
// emulator" (see Run) and the tests.
//
// It is not the real API, and says so: every answer, and every webhook
// request it sends, carries "X-KH-Emulator: 1" (HeaderEmulator), so that a
// log or a recorded response never passes for the real thing. An error whose
// type or reason the spec does not document says so in its body: a field
// "emulator" naming the invention, and for an invented type a "type" under
// EmulatorErrorTypeBase instead of the API's namespace.
//
// # Provenance
//
// Where the spec is silent the emulator had to choose. The section of docs/emulator.md
// "What comes from the spec, and what the emulator chose" lists every
// behaviour, status, reason, type, header and field with its source (the
// spec's section, or "emulator's choice") and what the emulator does; code
// written against an "emulator's choice" row must be checked against the
// real API. TestProvenanceListsEveryReason fails when the emulator can
// answer with a reason or error code that table does not name.
//
// # Request pipeline
//
// Every request, in this order:
//
//  0. A request-target under ControlPath goes to the control endpoint
//     (unless Options.NoControl), outside everything below.
//  1. An X-Request-Id (26-char ULID, Crockford base32) is assigned. Every
//     answer carries it, plus X-KH-Emulator: 1 and Date from the emulator
//     clock (Now() + Faults.ClockOffset) so clients can learn the offset.
//  2. Faults.FailCount: answer with FailStatus before any work; else
//     Faults.Random's 503 and 429 at their rates.
//  3. Per client IP token bucket (r.RemoteAddr; X-Forwarded-For is not
//     trusted): 429 rate_limited, reason ip_rate_limit.
//  4. Target outside BasePath: 404. GET /v1/health: answered unsigned.
//  5. Authentication (spec §1), checks in this order, each a 401
//     auth_failed with the reason: missing_headers (any of the four absent
//     or empty), bad_key, bad_timestamp, bad_nonce, bad_signature (formats;
//     a header sent twice counts as malformed), timestamp_out_of_window
//     (|server - ts| > 300 s; exactly 300 passes), unknown_or_locked_key,
//     then the body is read (max 1 MiB, else 400 validation_failed),
//     signature_mismatch (hmac.Equal), ip_not_allowed (Key.AllowIPs, the
//     client address r.RemoteAddr), replay_detected. The nonce is recorded
//     only after the signature verified and the address was allowed, so
//     refused requests burn no nonces; nonces are per key and remembered
//     600 s. The signed PATH is the raw request-target (r.RequestURI)
//     after BasePath (with Options.SignedPath "full", the whole
//     request-target, BasePath included), query included, never a
//     re-encoded URL.
//  6. Per-key token buckets: 429 rate_limited, reason key_rate_limit.
//  7. Routing on the raw path: unknown path 404 not_found; known path with
//     another method 405 method_not_allowed with an Allow header. HEAD is
//     answered on every GET route, as GET without the body.
//  8. Scope: 403 forbidden_scope, reason missing_scope.
//  9. Idempotency (POST /v1/orders, POST /v1/services/{id}/actions).
//  10. The handler; then Faults.Delay; for a committed write
//     SlowAfterCommit; the idempotency record is finished (with the real
//     answer); for a committed write DropAfterCommit (no answer) or
//     FailAfterCommit (a 500), counted or random; and the answer is
//     written.
//
// # Lifecycle
//
// Accepting a request and carrying it out are separate steps, each on its
// own timer (see Lifecycle), each sending its webhook when it happens:
//
//   - POST /v1/orders decides at once how the order is paid: from credit
//     when the balance covers it (the amount is reserved now), else from a
//     valid card on file; otherwise 402 payment_required with
//     insufficient_credit_and_no_card, card_expired or card_declined, and
//     no order. An accepted order is 201 "pending", with service_id,
//     invoice_id and paid_at null.
//   - After PaymentDelay the payment settles: "paid" (order.paid, then
//     invoice.created; the service is created "provisioning" with
//     power_state "stopped"), or, for a card payment whose card has since
//     started to decline, expired or been removed, "payment_failed" with
//     failure_reason (order.payment_failed; no service, no invoice).
//   - After ProvisionDelay the service is "active" and "running"
//     (service.provisioned). Actions on a provisioning service are 400.
//   - start, stop, reboot and reinstall are slow: answered 202 with status
//     "pending" (completed_at null; the service shows pending_action), and
//     completed after ActionDelay. suspend, unsuspend and terminate
//     complete inside the request (200). Either way the completion sends
//     service.action_completed with the action answer as data. While an
//     action is pending, other actions on the service are 400.
//
// With the zero Lifecycle every step runs inside the request, in the order
// above: the 201 says paid, the service is active, actions answer 200
// completed. With Lifecycle.Manual no step runs until Advance (or POST
// /__emulator/advance), one round of steps per call. An idempotent replay
// returns the answer stored at the time (for example a 201 "pending"),
// not the order's current state: read GET /v1/orders/{id} for that.
//
// # Failures on demand
//
// All of them from the Go API at any time, from the command line at start
// and from the control endpoint at run time:
//
//   - A card on file that declines or has expired: Options.Card, SetCard,
//     -card, PUT /__emulator/card.
//   - More keys and accounts (tenant isolation, per-key nonces and
//     idempotency, webhook fan-out): Options.Keys, NewKey, SetKey,
//     POST /__emulator/keys.
//   - The 402 reason client_not_found: SetClientNotFound,
//     PUT /__emulator/accounts/{id} {"client_not_found":true}.
//   - The other form of the signed PATH (spec §9.1): Options.SignedPath,
//     -signed-path full.
//   - A key locked at run time: LockKey, POST /__emulator/keys/{id}/lock.
//   - A secret rotated at run time, the old one failing at once:
//     RotateSecret, POST /__emulator/keys/{id}/rotate-secret.
//   - An IP whitelist: Key.AllowIPs, SetAllowIPs, -allow-ip,
//     PUT /__emulator/keys/{id}/allow-ips.
//   - A chosen scope set: Key.Scopes, SetScopes, -scopes (the spec's names,
//     "all", "read-only" or "none"; see ParseScopes),
//     PUT /__emulator/keys/{id}/scopes.
//   - Transport faults (errors, delays, dropped connections, clock skew,
//     duplicate webhooks): Faults, SetFaults, the fault flags,
//     PUT /__emulator/faults.
//   - Failures after the order is committed, so that a retry with the
//     same Idempotency-Key must get the stored answer: the connection
//     dropped (Faults.DropAfterCommit, -drop-after-commit), a 500 instead
//     of the answer (Faults.FailAfterCommit, -fail-after-commit), the
//     answer late, the key in progress meanwhile (Faults.SlowAfterCommit,
//     -slow-after-commit); PUT /__emulator/faults for all three.
//   - Random faults for soaks (Faults.Random, the -random-* and
//     -clock-walk-* flags, "random" in PUT /__emulator/faults): 503 and
//     429 before any work, drop, 500 and slow answer after commit, each
//     at its rate, and a clock offset that walks in steps. How many fired
//     of each kind: InjectedFaults, GET /__emulator/state.
//   - What a request with the key of an order still being answered gets:
//     Options.InProgress, SetInProgress, -in-progress 409|replay,
//     PUT /__emulator/in-progress.
//
// # Webhooks
//
// One URL per key (PUT /v1/webhooks {"url":"https://..."}; null or ""
// clears). Without AllowInsecureWebhooks only https URLs whose host is, or
// resolves only to, public addresses are accepted, and the default client
// re-checks the dialled address and follows no redirects. Each event is
// POSTed to every distinct URL of the account's keys as
// {"id","type","created","data"} with header WebhookHeader:
// "t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>" (a fresh t on each
// attempt) and X-KH-Emulator: 1. Any 2xx is success.
//
// Delivery works like a production sender's: each URL has its own queue
// and worker, so a slow or failing receiver never delays another; a failed
// delivery waits for its retry without holding up the deliveries behind
// it; attempts follow Options.WebhookRetries (the waits before each retry).
// Faults.DuplicateWebhooks sends deliveries twice on purpose and Redeliver
// resends a finished event; receivers must process each event id once. At
// most 1024 deliveries are pending (beyond that a delivery is recorded as
// failed, never blocking API requests); WebhookDeliveries keeps the last
// 1000 outcomes. Close discards pending deliveries.
//
// # Control endpoint
//
// See ControlPath for the routes; docs/emulator.md has curl examples. It is
// meant for tests in other languages: set faults, lock a key, rotate a
// secret, change scopes, whitelist or card, drive the lifecycle, resend a
// webhook, reset everything. It is not authenticated.
//
// # Defaults: the Go API and the command line
//
// The Go API's zero values keep the emulator deterministic for tests in
// Go, where a test drives each step itself; "khproxy emulator" defaults to
// what an app meets against the real API, because that is what it is run
// for:
//
//	Setting            Go API zero value              khproxy emulator default
//	-----------------  -----------------------------  ------------------------------------
//	Lifecycle          instant (inside the request)   payment 1 s, provisioning 2 s,
//	                                                  slow actions 2 s
//	Webhook retries    FastWebhookRetries: 100 ms,    ProductionWebhookRetries: 1 m, 5 m,
//	                   300 ms, 1 s                    30 m, 2 h, 6 h, 12 h, 24 h
//	Key scopes         nil: read-only (spec §4.2)     read-only (spec §4.2)
//	Card on file       none                           none
//	Rate limits        spec defaults                  spec defaults
//	Control endpoint   on                             on
//
// Tests that need everything to succeed at once pass AllScopes and leave
// Lifecycle zero. "khproxy demo" passes AllScopes with the command line's
// lifecycle delays and FastWebhookRetries, and says so in its banner.
//
// # Other choices where the spec is silent
//
// Errors: besides the documented codes the emulator uses method_not_allowed
// (405) and capacity_exceeded (503, an emulator cap was hit and nothing was
// done; Retry-After when temporary), typed under EmulatorErrorTypeBase.
// Injected 5xx are type injected_fault (under EmulatorErrorTypeBase, never
// the API's internal_error) with the injected status; an injected 429 is
// rate_limited with reason injected_fault. 409 conflicts carry reason
// body_mismatch or request_in_progress. Every reason the spec does not name
// is marked in the body's "emulator" field.
//
// Idempotency: keys are scoped per API key; the fingerprint is method,
// endpoint (with the service id) and the SHA-256 of the body, so the same
// key on another endpoint or with another body is 409
// idempotency_conflict. A missing key is 400 validation_failed with an
// errors[] entry for field Idempotency-Key; a malformed one too. While the
// first request with a key is still being answered (also while a slow
// answer waits, see Faults.SlowAfterCommit), another one with the same
// body gets, by InProgress: 409 idempotency_conflict, reason
// request_in_progress, Retry-After: 1 (the default, "409"); or ("replay")
// it waits, at most MaxInProgressWait, for the first one's answer and gets
// it replayed (or runs itself when the first one's 5xx was not stored).
// The spec does not say what the real API does here; test your client
// against both. Another body with the key is 409 body_mismatch at once
// either way. Handler answers with status < 500 (2xx and 4xx business outcomes such as
// 400, 402, 404) are stored for 24 h after the first request; 5xx answers
// are not stored and release the key, so a retry runs again. A replay
// returns the stored status, body and Content-Type/Location, with a fresh
// X-Request-Id header (a problem body's request_id becomes the same fresh
// id, the rest stays byte for byte: spec §0 has one id per answer), fresh
// rate-limit headers and "Idempotent-Replayed: true". Replays are not committed writes (no DropAfterCommit).
//
// Rate limits: per key a minute bucket (PerMinute refill, Burst size) and
// a day bucket (PerDay size, refilling evenly over 24 h); per IP a bucket
// of PerIPPerMinute. Only allowed requests take tokens. Answers to
// authenticated requests carry X-RateLimit-Remaining (whole tokens left,
// the lower of both per-key buckets) and X-RateLimit-Reset (delta
// seconds, rounded up, until the minute bucket is full again; not an
// epoch). 429s carry Retry-After in whole seconds, at least 1. With
// RateLimit.Disabled no limits apply and no X-RateLimit-* headers are sent.
//
// Pagination (GET /v1/services, GET /v1/billing/invoices): query
// parameters page (from 1) and per_page (1..100, default 20); answer
// {"data":[...],"pagination":{"page","per_page","total","total_pages"}};
// a page past the end has empty data. Bad values are 400 with errors[].
//
// Order label: POST /v1/orders accepts an optional "label" (1 to 200
// bytes, no control characters), kept on the order, shown in its answers
// ("label", null when absent) and in GET /__emulator/orders, so that a test
// can count the orders each of its purchases made. The spec documents no
// such field: do not send it to the real API.
//
// Money: amounts are decimal strings ("9.99") with a currency code;
// Options.InitialBalance and Order.Amount are minor units. Unknown fields
// in JSON bodies are rejected.
//
// Service actions (body {"action":"reboot"}, optional "os" for reinstall):
// start/stop set power_state (idempotent), reboot needs a running service,
// suspend/unsuspend toggle status, terminate is final. A transition that is
// not allowed is 400 validation_failed on field action. The answer is
// {"id","action","status","service_id","requested_at","completed_at",
// "service"}: 200 with status "completed", or 202 with status "pending"
// and completed_at null for a slow action that completes later.
//
// Tenant isolation: keys with the same Key.Account share resources and the
// card; other accounts' resources are 404 not_found.
//
// Bounds: nonce cache 200k entries (full: 429 reason nonce_cache_full),
// idempotency store 20k entries, 10k orders (each with at most one service
// and one invoice), 10k client IP buckets, 1024 pending and 1000 logged
// webhook deliveries, 1 MiB request bodies.
//
// # Faults in tests
//
// Pass Options.Faults or call SetFaults at any time; see Faults. Example:
//
//	emu.SetFaults(emulator.Faults{DropAfterCommit: 1})
//	// the next successful POST /v1/orders commits, then the connection
//	// is closed with no answer; a retry with the same Idempotency-Key
//	// (re-signed) replays the stored 201.
//
// For a soak, random faults at rates (as bench/soak runs them):
//
//	emu.SetFaults(emulator.Faults{RetryAfter: time.Second, Random: emulator.RandomFaults{
//		Unavailable: 0.03, RateLimited: 0.03,
//		DropAfterCommit: 0.03, FailAfterCommit: 0.03, SlowAfterCommit: 0.03, SlowDelay: 3500 * time.Millisecond,
//		ClockStep: 200 * time.Second, ClockEvery: 30 * time.Second, ClockMax: 400 * time.Second,
//	}})
package emulator
