package upstream

import (
	"net/http"
	"time"
)

// The reasons of the API's 401 auth_failed answers (spec §6), as
// Metrics.UpstreamAttemptDone is told them; anything else is AuthReasonOther.
var authReasons = []string{
	"missing_headers", "bad_key", "bad_timestamp", "timestamp_out_of_window", "bad_nonce",
	"bad_signature", "signature_mismatch", "replay_detected", "unknown_or_locked_key", "ip_not_allowed",
}

// AuthReasonOther stands for a 401 whose reason is missing or not one the
// spec lists, so that label values stay bounded whatever the API sends.
const AuthReasonOther = "other"

// AuthReasons returns the values Metrics.UpstreamAttemptDone may report as
// a 401's reason: the spec's list and AuthReasonOther.
func AuthReasons() []string { return append(append([]string(nil), authReasons...), AuthReasonOther) }

// AttemptReasons returns every value Metrics.UpstreamAttempt may report:
// AttemptFirst and each retry reason.
func AttemptReasons() []string {
	return []string{AttemptFirst, string(retryConnect), string(retryTransport), string(retryTimeout),
		string(retryUnavailable), string(retryRateLimited), string(retryReplay), string(retryClockSkew),
		string(retrySecretRotated), string(retryInProgress), string(retryInDoubt)}
}

// boundedAuthReason maps a 401's reason onto AuthReasons.
func boundedAuthReason(reason string) string {
	for _, r := range authReasons {
		if r == reason {
			return r
		}
	}
	return AuthReasonOther
}

// measure reports one finished attempt to the metrics: its answer's status
// (0 when there was none), a 401's reason, and d, the time from handing the
// attempt to the next RoundTripper until response headers or the error. It
// records a 401's reason in c for the access log.
func (t *Transport) measure(c *Call, resp *http.Response, d time.Duration) {
	status, reason := 0, ""
	if resp != nil {
		status = resp.StatusCode
		if status == http.StatusUnauthorized {
			reason = boundedAuthReason(authReason(resp))
		}
	}
	c.AuthReason = reason
	t.metrics.UpstreamAttemptDone(status, reason, d)
}
