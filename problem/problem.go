// Package problem writes RFC 7807 "Problem Details" bodies in the shape the
// KernelHost Reseller API uses for its errors (spec §6): type, title, status,
// detail, request_id and an optional reason or errors list.
//
// It knows nothing of khproxy's own error kinds; callers decide the fields.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// OwnTypePrefix starts the type of every problem khproxy answers itself,
// never the API's (whose types are URLs under its own domain), so that a
// logged body cannot be mistaken for the API's. Each room appends its own
// name for the problem.
const OwnTypePrefix = "urn:khproxy:problem:"

// ContentType is the media type of every problem body.
const ContentType = "application/problem+json"

// Details is one problem. The zero value is a valid, if uninformative,
// problem; Write fills in Status and Title from the HTTP status when they are
// empty. A Details is plain data and safe to share once built.
type Details struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Reason    string       `json:"reason,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// FieldError is one entry of Details.Errors: which input field failed and why.
// The spec does not document the element shape; this is the common one.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Write sends p as the whole response with status p.Status (500 when zero).
// It sets Content-Type and Content-Length and must be called before anything
// else was written to w.
func Write(w http.ResponseWriter, p Details) {
	status, header, body := Render(p)
	h := w.Header()
	for k, v := range header {
		h[k] = v
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Render returns what Write sends for p: the status, the headers
// (Content-Type, Content-Length, X-Content-Type-Options) and the body, for a
// caller that writes the response itself. It is safe for concurrent use.
func Render(p Details) (int, http.Header, []byte) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	body, err := json.Marshal(p)
	if err != nil { // only strings and ints: unreachable, but never panic
		body = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		p.Status = http.StatusInternalServerError
	}
	body = append(body, '\n')
	h := http.Header{}
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	return p.Status, h, body
}
