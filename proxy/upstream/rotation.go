package upstream

import (
	"log/slog"
	"net/http"
)

// SecretRereader is a secret source that can read its secret again at
// once: *signer.FileSecret. The API drops an old secret the moment a new
// one is issued, while a mounted Kubernetes Secret reaches the pod 60-90 s
// later and a file-watching source looks at most once a second: a 401
// signature_mismatch is the earliest sign of a rotation.
type SecretRereader interface {
	// Generation counts the distinct secrets loaded so far.
	Generation() uint64
	// Reread reads the secret again now and returns the generation in use
	// afterwards.
	Reread() (uint64, error)
}

// Results of a re-read after a 401 signature_mismatch, as
// Metrics.SecretReread is told them.
const (
	SecretChanged   = "changed"   // a new secret since the rejected signature: the request is retried once with it
	SecretUnchanged = "unchanged" // the secret that was rejected is still the file's
	SecretError     = "error"     // the file is unusable; the last good secret stays in use
)

// SecretRereadResults returns every value Metrics.SecretReread may report.
func SecretRereadResults() []string { return []string{SecretChanged, SecretUnchanged, SecretError} }

// retrySecretRotated is the retry reason of a request resent once because
// its signature_mismatch was answered while the secret file held a newer
// secret. A 401 changed nothing at the API, so any request may be resent.
const retrySecretRotated retryReason = "secret_rotated"

// signatureMismatch is the 401 reason for a signature that did not verify
// (spec §1.5): with a correct signer, a wrong secret.
const signatureMismatch = "signature_mismatch"

// secretGeneration returns the generation of the secret the next signature
// will use, or a later one; 0 when the source does not rotate.
func (t *Transport) secretGeneration() uint64 {
	if rr, ok := t.signer.Secret.(SecretRereader); ok {
		return rr.Generation()
	}
	return 0
}

// secretRotated reports whether resp is a 401 signature_mismatch to an
// attempt signed with a secret that is no longer the newest: it re-reads a
// rotating secret at once to find out.
func (t *Transport) secretRotated(req *http.Request, c *Call, resp *http.Response) bool {
	if resp == nil || resp.StatusCode != http.StatusUnauthorized || c.AuthReason != signatureMismatch {
		return false
	}
	rr, ok := t.signer.Secret.(SecretRereader)
	if !ok {
		return false
	}
	gen, err := rr.Reread()
	switch {
	case err != nil:
		t.metrics.SecretReread(SecretError)
		t.log.Warn("API answered signature_mismatch and the secret file is unusable: the last good secret stays in use", "method", req.Method, "path", c.Target, "error", err)
		return false
	case gen == c.secretGen:
		t.metrics.SecretReread(SecretUnchanged)
		level := slog.LevelDebug // the access log has each request's 401 at WARN
		if t.rejectedGen.Swap(gen) != gen {
			level = slog.LevelWarn
		}
		t.log.Log(req.Context(), level, "API answered signature_mismatch and the secret file still holds the secret it rejected: put the API's current secret into KH_SECRET_FILE", "method", req.Method, "path", c.Target)
		return false
	}
	t.metrics.SecretReread(SecretChanged)
	return true
}
