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
// log or a recorded response never passes for the real thing. Where the
// spec is silent the emulator had to choose; the table below says which
// behaviours come from the spec and which are the emulator's choice. Code
// written against an "emulator's choice" row must be checked against the
// real API.
//
// # Provenance
//
//	Behaviour                                                          Source
//	------------------------------------------------------------------ --------------------------------
//	Base path /cp/kh_reseller_api; signed PATH starts at /v1           spec §0, §1.2 (examples)
//	KH-Key/-Timestamp/-Nonce/-Signature formats, ±300 s, nonce 600 s   spec §1.1, §1.3
//	Signing string, lowercase hex, SHA-256 of the raw body             spec §1.2
//	GET /v1/health unsigned                                            spec §1.4
//	401 auth_failed and its ten reasons                                spec §1.5, §6
//	Order in which the auth checks run                                 emulator's choice (spec §7.12)
//	Rotated secret fails at once, no grace period                      spec §1.5
//	IP whitelist (CIDR, v4/v6) -> 401 ip_not_allowed                   spec §4.4
//	  ... checked after the signature, before the nonce                emulator's choice
//	Idempotency-Key on POST /v1/orders and .../actions, format, 24 h,  spec §2
//	  same key + other body -> 409 idempotency_conflict
//	Idempotency per API key; missing key 400; 5xx not stored;          emulator's choice (spec §2)
//	  Idempotent-Replayed header
//	A key whose request is still being answered: 409                   emulator's choice, both ways
//	  request_in_progress with Retry-After: 1 (InProgressConflict),      (the spec does not say what
//	  or wait and replay the stored answer (InProgressReplay)            the API answers)
//	Optional order field "label", kept on the order                    emulator only (spec §5 shows
//	                                                                     product_id, billing_cycle)
//	Faults: failures before and after commit, slow answers, random     emulator only
//	  faults, a walking clock; /__emulator/orders
//	Scope names, 403 forbidden_scope / missing_scope                   spec §4.2, §5
//	A new key is read-only (Key.Scopes nil, CLI default)               spec §4.2
//	  ... read-only excludes the sensitive read:credentials            spec §4.2 (reading)
//	Rate limits 60/min burst 20, 5000/day, 600/min per IP; 429 +       spec §4.3
//	  Retry-After; X-RateLimit-Remaining and -Reset present
//	X-RateLimit-Reset as delta seconds; which answers carry them       emulator's choice (spec §4.3)
//	The 15 endpoints, their methods and scopes                         spec §5
//	405 method_not_allowed with Allow; HEAD on GET routes              emulator's choice
//	Problem+JSON fields; type URI .../reseller-api/errors/<code>       spec §6, §9.5
//	errors[] element {"field","message"}                               emulator's choice (spec §6)
//	503 capacity_exceeded; reason injected_fault; 409 reasons          emulator's choice
//	X-Request-Id on every answer, repeated as request_id               spec §0
//	  ... a ULID (26 Crockford base32 characters)                      spec §0 (example looks like one)
//	Date header from the emulator clock                                emulator's choice (HTTP)
//	X-KH-Emulator: 1; the control endpoint /__emulator/                emulator only
//	Credit first, then the card; 402 payment_required reasons          spec §0, §6
//	  insufficient_credit_and_no_card, card_declined, card_expired
//	The card pays the whole amount (no split); credit reserved when    emulator's choice
//	  the order is accepted
//	Order status pending -> paid | payment_failed, failure_reason      emulator's choice
//	Service status provisioning -> active; power_state                 emulator's choice
//	The seven actions, unsuspend included                              spec §5 (endpoints page)
//	Action body {"action","os"}; which transitions are allowed         emulator's choice (spec §5)
//	Slow actions answer 202 pending; the action answer                 emulator's choice
//	  {id,action,status,service_id,requested_at,completed_at,service}
//	Response bodies: product, order, service, credentials, /v1/me,     emulator's choice (spec §5)
//	  balance, invoice, health; Location; pdf_url
//	The order's config object; billing cycles monthly, quarterly,      emulator's choice (spec §5:
//	  annually                                                           only "monthly" in an example)
//	Catalog (products 7, 42, 108, 230, 301), prices, EUR, decimal      emulator's choice
//	  strings for money
//	Pagination page/per_page, {"data","pagination"} envelope           emulator's choice (spec §5)
//	Invoice PDF is application/pdf                                     spec §5, §9.4
//	Other accounts' resources are 404 not_found                        spec §4.5
//	Credentials reads are audit-logged                                 spec §4.2 (the log line is ours)
//	One webhook URL per key; GET/PUT /v1/webhooks; https and public    spec §3
//	  addresses only
//	PUT /v1/webhooks body {"url":...}, null or "" clears               emulator's choice (spec §3)
//	Webhook signature "t=<unix>,v1=<hex HMAC-SHA256("<t>.<body>")>"    spec §3 ("Stripe-compatible");
//	                                                                     the exact format is Stripe's,
//	                                                                     unconfirmed
//	Webhook header KH-Webhook-Signature; a separate whsec_ secret      emulator's choice (spec §3, §9.9)
//	Webhook envelope {"id","type","created","data"}                    emulator's choice (spec §3)
//	Events order.paid, service.provisioned, invoice.created            spec §3
//	Events order.payment_failed, service.action_completed              emulator's choice
//	Retry schedule, any 2xx is success, per-endpoint delivery,         emulator's choice (spec §3)
//	  deliberate duplicates
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
//     after BasePath, query included, never a re-encoded URL.
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
// See ControlPath for the routes; the README has curl examples. It is
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
// Lifecycle zero; "khproxy demo" does the same and says so in its banner.
//
// # Other choices where the spec is silent
//
// Errors: besides the documented codes the emulator uses method_not_allowed
// (405) and capacity_exceeded (503, an emulator cap was hit and nothing was
// done; Retry-After when temporary). Injected 5xx use internal_error with
// the injected status and reason injected_fault. 409 conflicts carry reason
// body_mismatch or request_in_progress.
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
// returns the stored status, body (byte-identical, so a problem body keeps
// the original request_id) and Content-Type/Location, with a fresh
// X-Request-Id header, fresh rate-limit headers and "Idempotent-Replayed:
// true". Replays are not committed writes (no DropAfterCommit).
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
