package main

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"khproxy/internal/testutil"
)

// TestUpstreamCAFileIsTrusted runs khproxy against an https upstream with a
// certificate of its own: trusted through KH_UPSTREAM_CA_FILE, refused
// without it.
func TestUpstreamCAFileIsTrusted(t *testing.T) {
	t.Parallel()
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("KH-Signature") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "signed over "+r.Proto)
	}))
	up.EnableHTTP2 = true
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	up.StartTLS()
	defer up.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		env        []string
		wantStatus int
		wantBody   string
	}{
		{"with the CA file", []string{"KH_UPSTREAM_CA_FILE=" + caFile}, http.StatusOK, "signed over HTTP/2.0"},
		{"without", nil, http.StatusBadGateway, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			logs := &testutil.SyncBuffer{}
			env := append([]string{"KH_KEY=" + testKey, "KH_SECRET=" + testSecret, "KH_UPSTREAM=" + up.URL + "/api",
				"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=", "KH_LOG_FORMAT=json", "KH_RETRY_MAX=0", "KH_SHUTDOWN_DELAY=0s"}, tt.env...)
			errc := make(chan error, 1)
			go func() { errc <- run(ctx, nil, env, io.Discard, logs) }()
			defer func() {
				cancel()
				if err := <-errc; err != nil {
					t.Errorf("run = %v", err)
				}
			}()
			addr := waitListening(t, logs, errc)
			resp, err := http.Get("http://" + addr + "/v1/products")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
		})
	}
}
