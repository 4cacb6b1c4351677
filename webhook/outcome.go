package webhook

import (
	"errors"
	"net/http"

	"khproxy/problem"
)

// Outcome is what became of one delivery, for metrics: a small, fixed set of
// values, safe as a label.
type Outcome string

// The outcomes of a delivery. Every request to a Receiver ends in exactly one.
const (
	OutcomeForwarded      Outcome = "forwarded"          // verified; the app answered 2xx
	OutcomeAppError       Outcome = "app_error"          // verified; the app answered non-2xx, passed back
	OutcomeAppUnreachable Outcome = "app_unreachable"    // verified; the app could not be reached (503)
	OutcomeAppTimeout     Outcome = "app_timeout"        // verified; the app did not answer in time (504)
	OutcomeReplay         Outcome = "replay"             // verified, already forwarded: 200, not forwarded again
	OutcomeNoSignature    Outcome = "no_signature"       // 400
	OutcomeMalformed      Outcome = "malformed"          // 400
	OutcomeMismatch       Outcome = "mismatch"           // 400
	OutcomeStale          Outcome = "stale"              // 400
	OutcomeFuture         Outcome = "future"             // 400
	OutcomeTooLarge       Outcome = "too_large"          // 413
	OutcomeBadBody        Outcome = "bad_body"           // 400: the body could not be read
	OutcomeMethod         Outcome = "method_not_allowed" // 405
	OutcomeSecret         Outcome = "secret_unavailable" // 503: no usable secret
	OutcomeSenderGone     Outcome = "sender_gone"        // the sender left while an identical delivery was forwarded
	OutcomeOverloaded     Outcome = "overloaded"         // 503: no room in the memory budget for the body
)

// Outcomes lists every outcome a Receiver reports, for pre-creating metric
// series so that a rate of zero is visible before the first event.
func Outcomes() []Outcome {
	return []Outcome{OutcomeForwarded, OutcomeAppError, OutcomeAppUnreachable, OutcomeAppTimeout, OutcomeReplay,
		OutcomeNoSignature, OutcomeMalformed, OutcomeMismatch, OutcomeStale, OutcomeFuture, OutcomeTooLarge,
		OutcomeBadBody, OutcomeMethod, OutcomeSecret, OutcomeSenderGone, OutcomeOverloaded}
}

// TypePrefix starts the problem type of every answer the receiver gives
// itself; the outcome follows it.
const TypePrefix = problem.OwnTypePrefix + "webhook_"

// rejection is how the receiver answers an outcome it decides itself: the
// one table of statuses and client-facing texts.
var rejections = map[Outcome]struct {
	status int
	detail string
}{
	OutcomeNoSignature:    {http.StatusBadRequest, "the signature header is missing or empty"},
	OutcomeMalformed:      {http.StatusBadRequest, "the signature header is malformed; want t=<unix seconds>,v1=<hex>"},
	OutcomeMismatch:       {http.StatusBadRequest, "no v1 signature matches the body"},
	OutcomeStale:          {http.StatusBadRequest, "the signature timestamp is older than the tolerance"},
	OutcomeFuture:         {http.StatusBadRequest, "the signature timestamp is further ahead than the tolerance"},
	OutcomeTooLarge:       {http.StatusRequestEntityTooLarge, "the body is larger than the receiver accepts"},
	OutcomeBadBody:        {http.StatusBadRequest, "the body could not be read"},
	OutcomeMethod:         {http.StatusMethodNotAllowed, "webhooks are delivered with POST"},
	OutcomeSecret:         {http.StatusServiceUnavailable, "the receiver has no usable signing secret"},
	OutcomeAppUnreachable: {http.StatusServiceUnavailable, "the app behind the receiver is unreachable"},
	OutcomeAppTimeout:     {http.StatusGatewayTimeout, "the app behind the receiver did not answer in time"},
	OutcomeSenderGone:     {http.StatusServiceUnavailable, "an identical delivery is being forwarded"},
	OutcomeOverloaded:     {http.StatusServiceUnavailable, "the receiver's memory budget for bodies is full: retry shortly"},
}

// outcomeOf maps a Verify error to its outcome.
func outcomeOf(err error) Outcome {
	switch {
	case errors.Is(err, ErrNoSignature):
		return OutcomeNoSignature
	case errors.Is(err, ErrMalformed):
		return OutcomeMalformed
	case errors.Is(err, ErrStale):
		return OutcomeStale
	case errors.Is(err, ErrFuture):
		return OutcomeFuture
	}
	return OutcomeMismatch // ErrMismatch, the only other error verify returns
}

// rejected reports whether o is a delivery the receiver refused before
// verifying it or because verification failed.
func (o Outcome) rejected() bool {
	switch o {
	case OutcomeNoSignature, OutcomeMalformed, OutcomeMismatch, OutcomeStale, OutcomeFuture,
		OutcomeTooLarge, OutcomeBadBody, OutcomeMethod, OutcomeSecret, OutcomeOverloaded:
		return true
	}
	return false
}

// writeProblem answers o with its status and a short problem+json body, and
// returns the status.
func writeProblem(w http.ResponseWriter, o Outcome) int {
	r := rejections[o]
	switch o {
	case OutcomeMethod:
		w.Header().Set("Allow", http.MethodPost)
	case OutcomeOverloaded:
		w.Header().Set("Retry-After", "1")
	}
	problem.Write(w, problem.Details{Type: TypePrefix + string(o), Status: r.status, Detail: r.detail, Reason: string(o)})
	return r.status
}
