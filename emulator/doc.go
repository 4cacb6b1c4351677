// Package emulator is an in-process emulator of the KernelHost Reseller
// API (see shared/spec/kernelhost-reseller-api.md). An *Emulator is an
// http.Handler that judges request signatures like the real API, keeps
// orders, services, invoices and balances in memory, sends signed
// webhooks, and can inject faults for retry-safety tests. It backs
// "khproxy demo", "khproxy emulator" (see Run) and the tests.
//
// # Request pipeline
//
// Every request, in this order:
//
//  1. An X-Request-Id (26-char ULID, Crockford base32) is assigned. Every
//     answer carries it, plus Date from the emulator clock (Now() +
//     Faults.ClockOffset) so clients can learn the offset.
//  2. Faults.FailCount: answer with FailStatus before any work.
//  3. Per client IP token bucket (r.RemoteAddr; X-Forwarded-For is not
//     trusted): 429 rate_limited, reason ip_rate_limit.
//  4. Target outside BasePath: 404. GET /v1/health: answered unsigned.
//  5. Authentication (spec §1), checks in this order, each a 401
//     auth_failed with the reason: missing_headers (any of the four absent
//     or empty), bad_key, bad_timestamp, bad_nonce, bad_signature (formats;
//     a header sent twice counts as malformed), timestamp_out_of_window
//     (|server - ts| > 300 s; exactly 300 passes), unknown_or_locked_key,
//     then the body is read (max 1 MiB, else 400 validation_failed),
//     signature_mismatch (hmac.Equal), replay_detected. The nonce is
//     recorded only after the signature verified, so unsigned garbage can
//     not burn nonces; nonces are per key and remembered 600 s. The signed
//     PATH is the raw request-target (r.RequestURI) after BasePath, query
//     included, never a re-encoded URL. ip_not_allowed is never produced:
//     keys have no IP whitelist (spec §4.4) in the emulator.
//  6. Per-key token buckets: 429 rate_limited, reason key_rate_limit.
//  7. Routing on the raw path: unknown path 404 not_found; known path with
//     another method 405 method_not_allowed with an Allow header. HEAD is
//     answered on every GET route, as GET without the body.
//  8. Scope: 403 forbidden_scope, reason missing_scope.
//  9. Idempotency (POST /v1/orders, POST /v1/services/{id}/actions).
//  10. The handler; then Faults.Delay, the idempotency record is finished,
//     Faults.DropAfterCommit, and the answer is written.
//
// # Choices where the spec is silent
//
// Errors: application/problem+json with type
// https://www.kernelhost.com/en/reseller-api/errors/<code>. Besides the
// documented codes the emulator uses method_not_allowed (405) and
// capacity_exceeded (503, an emulator cap was hit and nothing was done;
// Retry-After when temporary). Injected 5xx use internal_error with the
// injected status and reason injected_fault. 409 conflicts carry reason
// body_mismatch or request_in_progress.
//
// Idempotency: keys are scoped per API key; the fingerprint is method,
// endpoint (with the service id) and the SHA-256 of the body, so the same
// key on another endpoint or with another body is 409
// idempotency_conflict. A missing key is 400 validation_failed with an
// errors[] entry for field Idempotency-Key; a malformed one too. While the
// first request with a key is still running, another one gets 409
// idempotency_conflict, reason request_in_progress, Retry-After: 1.
// Handler answers with status < 500 (2xx and 4xx business outcomes such as
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
// Money: amounts are decimal strings ("9.99") with a currency code;
// Options.InitialBalance and Order.Amount are minor units. Orders are paid
// from the account's credit; there is never a card on file, so an order
// above the balance is 402 payment_required, reason
// insufficient_credit_and_no_card. A paid order creates a service (status
// active, power_state running) and a paid invoice. Unknown fields in JSON
// bodies are rejected.
//
// Service actions (body {"action":"reboot"}, optional "os" for
// reinstall): start/stop set power_state (idempotent), reboot needs a
// running service, suspend/unsuspend toggle status, terminate is final.
// A transition that is not allowed is 400 validation_failed on field
// action. Answers are 200 with the updated service.
//
// Tenant isolation: keys with the same Key.Account share resources; other
// accounts' resources are 404 not_found.
//
// Webhooks: one URL per key (PUT /v1/webhooks {"url":"https://..."};
// null or "" clears). Without AllowInsecureWebhooks only https URLs whose
// host is, or resolves only to, public addresses are accepted, and the
// default client re-checks the dialled address and follows no redirects.
// After an order, order.paid, service.provisioned and invoice.created are
// POSTed to every distinct URL of the account's keys as
// {"id","type","created","data"} with header WebhookHeader:
// "t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>". One worker
// delivers from a queue of 256 (full: the delivery is recorded as failed,
// never blocking API requests), with 4 attempts and exponential backoff
// from 500 ms; any 2xx is success. Close discards queued events.
//
// Bounds: nonce cache 200k entries (full: 429 reason nonce_cache_full),
// idempotency store 20k entries, 10k orders (each with one service and one
// invoice), 10k client IP buckets, 1000 webhook delivery records, 1 MiB
// request bodies.
//
// # Faults in tests
//
// Pass Options.Faults or call SetFaults at any time; see Faults. Example:
//
//	emu.SetFaults(emulator.Faults{DropAfterCommit: 1})
//	// the next successful POST /v1/orders commits, then the connection
//	// is closed with no answer; a retry with the same Idempotency-Key
//	// (re-signed) replays the stored 201.
package emulator
