package emulator

import (
	"net/http"
	"strings"
	"testing"
)

// TestSignedPath: the emulator verifies the form of PATH that
// Options.SignedPath names (spec §9.1) and refuses the other with 401
// signature_mismatch, the query included in both.
func TestSignedPath(t *testing.T) {
	const path = "/v1/services?page=1&per_page=5"
	tests := []struct {
		mode      string
		signed    string
		wantCode  int
		wantRefus string
	}{
		{"", path, http.StatusOK, ""},
		{"", DefaultBasePath + path, http.StatusUnauthorized, "signature_mismatch"},
		{SignedPathV1, path, http.StatusOK, ""},
		{SignedPathV1, DefaultBasePath + path, http.StatusUnauthorized, "signature_mismatch"},
		{SignedPathFull, DefaultBasePath + path, http.StatusOK, ""},
		{SignedPathFull, path, http.StatusUnauthorized, "signature_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.mode+" "+tt.signed, func(t *testing.T) {
			env := newEnv(t, func(o *Options) { o.SignedPath = tt.mode })
			resp, body := env.do(t, rq{path: path, signPath: tt.signed})
			if tt.wantCode == http.StatusOK {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
				}
				return
			}
			wantProblem(t, resp, body, tt.wantCode, codeAuth, tt.wantRefus)
		})
	}
}

func TestSignedPathInvalid(t *testing.T) {
	id, secret, err := NewCredentials()
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Keys: []Key{{ID: id, Secret: secret}}, SignedPath: "prefix"})
	if err == nil || !strings.Contains(err.Error(), "signed path") {
		t.Fatalf("New with SignedPath prefix: %v, want an error naming the signed path", err)
	}
}
