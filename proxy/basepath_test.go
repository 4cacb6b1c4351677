package proxy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"khproxy/internal/testutil"
)

// TestAPIURLsAreTheSameRequest sends the API's own URLs, in origin form and
// in absolute (forward-proxy) form: each goes upstream, and is signed, exactly
// as the /v1/... form. The upstream's verifier signs the path after the base,
// so a base path sent twice would not verify.
func TestAPIURLsAreTheSameRequest(t *testing.T) {
	h := newHarness(t, nil)
	upHost := strings.TrimPrefix(h.up.URL, "http://")
	tests := []struct{ name, target, want string }{
		{"khproxy's form", "/v1/products?page=2", basePath + "/v1/products?page=2"},
		{"origin form with the base", basePath + "/v1/products?page=2", basePath + "/v1/products?page=2"},
		{"absolute form, the upstream's host", "http://" + upHost + basePath + "/v1/orders/1006", basePath + "/v1/orders/1006"},
		{"absolute form, the documented host", "https://www.kernelhost.com" + basePath + "/v1/me", basePath + "/v1/me"},
		{"absolute form, another host", "http://evil.example" + basePath + "/v1/me", basePath + "/v1/me"},
		{"the base alone", basePath, basePath + "/"},
		{"the base and a query", basePath + "?x=1", basePath + "/?x=1"},
		{"the base twice is stripped once", basePath + basePath + "/v1/x", basePath + basePath + "/v1/x"},
		{"a longer first segment is not the base", basePath + "x/v1/products", basePath + basePath + "x/v1/products"},
		{"escapes kept", basePath + "/v1/a%2Fb?q=a+b%20c", basePath + "/v1/a%2Fb?q=a+b%20c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := h.rawOK(t, "GET "+tt.target+" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
			if a.RequestURI != tt.want {
				t.Errorf("upstream got %q, want %q", a.RequestURI, tt.want)
			}
			if a.Host != upHost {
				t.Errorf("sent to host %q, want the upstream %q", a.Host, upHost)
			}
		})
	}
	t.Run("an order in both forms gets an automatic key", func(t *testing.T) {
		for i, target := range []string{"/v1/orders", basePath + "/v1/orders"} {
			body := fmt.Sprintf(`{"n":%d}`, i) // distinct: identical orders would share one answer
			a := h.rawOK(t, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", target, len(body), body))
			if a.RequestURI != basePath+"/v1/orders" || string(a.Body) != body || a.Header.Get("Idempotency-Key") == "" {
				t.Errorf("POST %s reached the upstream as %s %s, Idempotency-Key %q", target, a.RequestURI, a.Body, a.Header.Get("Idempotency-Key"))
			}
		}
	})
}

// TestLocationIsRelocated checks that Location and Content-Location pointing
// under the upstream's base come back in khproxy's path space, and that
// nothing else, the body included, changes.
func TestLocationIsRelocated(t *testing.T) {
	body := fmt.Sprintf(`{"id":1006,"pdf_url":"%s/v1/billing/invoices/9006/pdf"}`, basePath)
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		// The test says which Location to answer with.
		w.Header().Set("Location", r.Header.Get("X-Test-Location"))
		w.Header().Set("Content-Location", r.Header.Get("X-Test-Location"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, body)
	})
	upHost := strings.TrimPrefix(h.up.URL, "http://")
	tests := []struct{ name, location, want string }{
		{"absolute path", basePath + "/v1/orders/1006", "/v1/orders/1006"},
		{"absolute URL", "http://" + upHost + basePath + "/v1/orders/1006", "/v1/orders/1006"},
		{"absolute URL, other case and scheme", "HTTPS://" + strings.ToUpper(upHost) + basePath + "/v1/orders/1006?x=1#top", "/v1/orders/1006?x=1#top"},
		{"the base alone", "http://" + upHost + basePath, "/"},
		{"another host", "https://www.example.com" + basePath + "/v1/orders/1006", "https://www.example.com" + basePath + "/v1/orders/1006"},
		{"another port", "http://127.0.0.1:1" + basePath + "/v1/orders/1006", "http://127.0.0.1:1" + basePath + "/v1/orders/1006"},
		{"outside the base", "/elsewhere/orders/1006", "/elsewhere/orders/1006"},
		{"outside the base on the upstream", "http://" + upHost + "/elsewhere", "http://" + upHost + "/elsewhere"},
		{"relative", "orders/1006", "orders/1006"},
		{"network-path", "//" + upHost + basePath + "/v1/orders/1006", "//" + upHost + basePath + "/v1/orders/1006"},
		{"already khproxy's", "/v1/orders/1006", "/v1/orders/1006"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, got := h.raw(t, "POST /v1/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n"+
				"Idempotency-Key: "+strconv.Itoa(i)+"\r\nX-Test-Location: "+tt.location+"\r\n\r\n{}")
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status = %d: %s", resp.StatusCode, got)
			}
			for _, name := range []string{"Location", "Content-Location"} {
				if v := resp.Header.Values(name); len(v) != 1 || v[0] != tt.want {
					t.Errorf("%s = %q, want %q", name, v, tt.want)
				}
			}
			if string(got) != body {
				t.Errorf("body = %s, want it unchanged: %s", got, body)
			}
		})
	}
}

// TestAPIURLsThroughTheEmulator follows the emulator's own URLs through
// khproxy: the order's Location, and the invoice's pdf_url from a body,
// which keeps the API's form and works as it is.
func TestAPIURLsThroughTheEmulator(t *testing.T) {
	h := newEmuHarness(t)
	code, hdr, body := h.must(t, "POST", "/v1/orders", testutil.OrderBody, nil)
	if code != http.StatusCreated {
		t.Fatalf("order: %d %s", code, body)
	}
	var order struct {
		ID        int64 `json:"id"`
		InvoiceID int64 `json:"invoice_id"`
	}
	if err := json.Unmarshal(body, &order); err != nil {
		t.Fatal(err)
	}
	loc := hdr.Get("Location")
	if want := fmt.Sprintf("/v1/orders/%d", order.ID); loc != want {
		t.Fatalf("Location = %q, want %q", loc, want)
	}
	code, _, got := h.must(t, "GET", loc, "", nil)
	if code != http.StatusOK || !bytes.Equal(got, body) {
		t.Errorf("following Location: %d %s, want 200 %s", code, got, body)
	}

	code, _, body = h.must(t, "GET", "/cp/kh_reseller_api/v1/billing/invoices", "", nil)
	var invoices struct {
		Data []struct {
			PDFURL string `json:"pdf_url"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &invoices); err != nil || code != http.StatusOK || len(invoices.Data) != 1 {
		t.Fatalf("invoices in the API's URL form: %d %s (%v)", code, body, err)
	}
	pdf := invoices.Data[0].PDFURL
	if want := fmt.Sprintf("/cp/kh_reseller_api/v1/billing/invoices/%d/pdf", order.InvoiceID); pdf != want {
		t.Errorf("pdf_url = %q, want the API's own %q (bodies are not rewritten)", pdf, want)
	}
	code, hdr, body = h.must(t, "GET", pdf, "", nil)
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(body, []byte("%PDF-")) {
		t.Errorf("pdf_url through khproxy: %d %s %q", code, hdr.Get("Content-Type"), body[:min(len(body), 8)])
	}
}
