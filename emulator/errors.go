package emulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"khproxy/problem"

	"khproxy/internal/bufresp"
)

// errorTypeBase is the prefix of every problem "type" URI (spec §6, §9.5).
const errorTypeBase = "https://www.kernelhost.com/en/reseller-api/errors/"

// Problem type codes. The first eight are documented (spec §6); the last
// two are the emulator's own and documented in doc.go.
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
)

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
	rec := bufresp.New()
	problem.Write(rec, problem.Details{
		Type:      errorTypeBase + ae.code,
		Title:     title,
		Status:    status,
		Detail:    ae.detail,
		RequestID: reqID,
		Reason:    ae.reason,
		Errors:    ae.fields,
	})
	for k, v := range ae.header {
		rec.Header()[k] = v
	}
	if ae.retryAfter > 0 {
		rec.Header().Set("Retry-After", strconv.FormatInt(ceilSeconds(ae.retryAfter), 10))
	}
	return &response{status: rec.Status, header: rec.Header(), body: rec.Body.Bytes()}
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
