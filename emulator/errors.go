package emulator

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"time"

	"khproxy/emulator/apiauth"
	"khproxy/problem"
)

// errorTypeBase is the prefix of the problem "type" URI of the error codes
// the spec documents (spec §6, §9.5).
const errorTypeBase = "https://www.kernelhost.com/en/reseller-api/errors/"

// EmulatorErrorTypeBase is the prefix of the problem "type" of the error
// codes the emulator invented (method_not_allowed, capacity_exceeded,
// injected_fault): outside the API's namespace, so that a logged answer
// cannot be mistaken for one of the API's.
const EmulatorErrorTypeBase = "urn:khproxy:emulator:error:"

// Problem type codes. The first eight are documented (spec §6); the others
// are the emulator's own (the provenance table in docs/emulator.md) and typed under
// EmulatorErrorTypeBase.
const (
	codeValidation       = "validation_failed"
	codeAuth             = "auth_failed"
	codePayment          = "payment_required"
	codeForbidden        = "forbidden_scope"
	codeNotFound         = "not_found"
	codeIdemConflict     = "idempotency_conflict"
	codeRateLimited      = "rate_limited"
	codeInternal         = "internal_error"
	codeMethodNotAllowed = "method_not_allowed"
	codeCapacity         = "capacity_exceeded"
	codeInjected         = "injected_fault"
)

// documentedReasons are the problem reasons the spec names, per code
// (spec §1.5, §4.2, §6). Any other reason is the emulator's own: its
// answers say so in the "emulator" field.
var documentedReasons = map[string][]string{
	codeAuth: {apiauth.ReasonMissingHeaders, apiauth.ReasonBadKey, apiauth.ReasonBadTimestamp, apiauth.ReasonBadNonce,
		apiauth.ReasonBadSignature, apiauth.ReasonTimestampWindow, apiauth.ReasonUnknownKey,
		apiauth.ReasonSignatureFailed, apiauth.ReasonIPNotAllowed, apiauth.ReasonReplay},
	codePayment:   {"insufficient_credit_and_no_card", "card_declined", "card_expired", "client_not_found"},
	codeForbidden: {"missing_scope"},
}

// documentedCodes are the error codes of spec §6.
var documentedCodes = []string{codeValidation, codeAuth, codePayment, codeForbidden, codeNotFound,
	codeIdemConflict, codeRateLimited, codeInternal}

// problemType returns the "type" URI of code: the API's namespace for a
// documented code, EmulatorErrorTypeBase for the emulator's own.
func problemType(code string) string {
	if slices.Contains(documentedCodes, code) {
		return errorTypeBase + code
	}
	return EmulatorErrorTypeBase + code
}

// inventionNote is the "emulator" field of a problem whose code or reason
// the spec does not document, saying which; "" when both are documented.
func inventionNote(code, reason string) string {
	switch {
	case !slices.Contains(documentedCodes, code):
		return "The error type " + code + " is the emulator's own: the API documents no such error."
	case reason != "" && !slices.Contains(documentedReasons[code], reason):
		return "The reason " + reason + " is the emulator's own: the API documents no such reason for " + code + "."
	}
	return ""
}

// emulatorProblem is the problem+json body of the emulator's errors: the
// API's fields (spec §6), plus "emulator" when the code or the reason is an
// invention of the emulator (see inventionNote).
type emulatorProblem struct {
	problem.Details
	Emulator string `json:"emulator,omitempty"`
}

// errorTable maps each problem code to its HTTP status and title. Every
// error status the emulator sends comes from here (injected faults may
// override the status of internal_error / rate_limited).
var errorTable = map[string]struct {
	status int
	title  string
}{
	codeValidation:       {http.StatusBadRequest, "Validation failed"},
	codeAuth:             {http.StatusUnauthorized, "Authentication failed"},
	codePayment:          {http.StatusPaymentRequired, "Payment required"},
	codeForbidden:        {http.StatusForbidden, "Forbidden scope"},
	codeNotFound:         {http.StatusNotFound, "Not found"},
	codeMethodNotAllowed: {http.StatusMethodNotAllowed, "Method not allowed"},
	codeIdemConflict:     {http.StatusConflict, "Idempotency conflict"},
	codeRateLimited:      {http.StatusTooManyRequests, "Rate limited"},
	codeInternal:         {http.StatusInternalServerError, "Internal error"},
	codeCapacity:         {http.StatusServiceUnavailable, "Emulator capacity exceeded"},
	codeInjected:         {http.StatusServiceUnavailable, "Injected fault"},
}

// apiError is an error answer before it is rendered as problem+json.
type apiError struct {
	code       string
	status     int // 0: from errorTable
	reason     string
	detail     string
	fields     []problem.FieldError
	retryAfter time.Duration // > 0: Retry-After header (whole seconds, >= 1)
	header     http.Header   // extra headers, e.g. Allow
}

func (a *apiError) Error() string { return a.code + ": " + a.detail }

func authError(reason, detail string) *apiError {
	return &apiError{code: codeAuth, reason: reason, detail: detail}
}

func validationError(field, msg string) *apiError {
	return &apiError{
		code:   codeValidation,
		detail: "The request failed validation; see errors.",
		fields: []problem.FieldError{{Field: field, Message: msg}},
	}
}

func notFound(detail string) *apiError {
	return &apiError{code: codeNotFound, detail: detail}
}

// response is a complete answer, buffered so that faults, delays and the
// idempotency store can act on it before anything reaches the wire.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) clone() *response {
	return &response{status: r.status, header: r.header.Clone(), body: bytes.Clone(r.body)}
}

// errorResponse renders ae as problem+json (the one helper mapping every
// error code to its status).
func errorResponse(reqID string, ae *apiError) *response {
	info, ok := errorTable[ae.code]
	if !ok {
		info = errorTable[codeInternal]
	}
	status := info.status
	if ae.status != 0 {
		status = ae.status
	}
	title := info.title
	if ae.status != 0 && ae.status != info.status {
		title = http.StatusText(status)
	}
	body, err := json.Marshal(emulatorProblem{
		Details: problem.Details{
			Type:      problemType(ae.code),
			Title:     title,
			Status:    status,
			Detail:    ae.detail,
			RequestID: reqID,
			Reason:    ae.reason,
			Errors:    ae.fields,
		},
		Emulator: inventionNote(ae.code, ae.reason),
	})
	if err != nil { // strings and ints only: unreachable
		body = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		status = http.StatusInternalServerError
	}
	h := http.Header{}
	h.Set("Content-Type", problem.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	for k, v := range ae.header {
		h[k] = v
	}
	if ae.retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(ceilSeconds(ae.retryAfter), 10))
	}
	return &response{status: status, header: h, body: append(body, '\n')}
}

// jsonResponse renders v as application/json.
func jsonResponse(status int, v any) *response {
	body, err := json.Marshal(v)
	if err != nil { // only plain structs and maps: unreachable
		return errorResponse("", &apiError{code: codeInternal, detail: "encoding response failed"})
	}
	body = append(body, '\n')
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	return &response{status: status, header: h, body: body}
}

// ceilSeconds rounds d up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// withRequestID gives a replayed problem answer this request's id: spec §0
// has one id per answer, in X-Request-Id and repeated as request_id, so the
// stored body's request_id becomes the new one. Nothing else of the stored
// body changes; an answer that is not problem+json is left alone.
func withRequestID(resp *response, reqID string) {
	if mt, _, _ := mime.ParseMediaType(resp.header.Get("Content-Type")); mt != problem.ContentType {
		return
	}
	var p struct {
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal(resp.body, &p) != nil || p.RequestID == "" {
		return
	}
	oldID, _ := json.Marshal(p.RequestID)
	newID, _ := json.Marshal(reqID)
	resp.body = bytes.Replace(resp.body, append([]byte(`"request_id":`), oldID...), append([]byte(`"request_id":`), newID...), 1)
}
