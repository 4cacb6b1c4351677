package emulator

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"khproxy/emulator/apiauth"
)

// Request authentication headers (spec §1.1).
const (
	HeaderKey       = apiauth.HeaderKey
	HeaderTimestamp = apiauth.HeaderTimestamp
	HeaderNonce     = apiauth.HeaderNonce
	HeaderSignature = apiauth.HeaderSignature
)

// authenticate runs the checks of spec §1 in the order documented in
// doc.go (apiauth.Store.Verify) and returns the verified key and the raw
// body bytes.
func (e *Emulator) authenticate(r *http.Request, signedPath string, serverNow time.Time) (*apiauth.Principal, []byte, *apiError) {
	p, body, err := e.auth.Verify(r, signedPath, serverNow, func() ([]byte, error) {
		body, ae := e.readBody(r)
		if ae != nil {
			return nil, ae
		}
		return body, nil
	})
	if err != nil {
		return nil, nil, refusalError(err)
	}
	return p, body, nil
}

// refusalError maps an error of apiauth.Store.Verify to its problem: the
// one place an authentication refusal becomes an apiError.
func refusalError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) { // from readBody
		return ae
	}
	var rf *apiauth.Refusal
	if !errors.As(err, &rf) {
		return &apiError{code: codeInternal, detail: "authentication failed unexpectedly"}
	}
	if rf.Status == http.StatusTooManyRequests {
		return &apiError{code: codeRateLimited, reason: rf.Reason, detail: rf.Detail, retryAfter: rf.RetryAfter}
	}
	return authError(rf.Reason, rf.Detail)
}

// readBody reads the whole body, at most e.maxBody bytes.
func (e *Emulator) readBody(r *http.Request) ([]byte, *apiError) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, e.maxBody+1))
	if err != nil {
		return nil, validationError("body", "could not read the request body")
	}
	if int64(len(body)) > e.maxBody {
		return nil, validationError("body", fmt.Sprintf("must not exceed %d bytes", e.maxBody))
	}
	return body, nil
}
