package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"khproxy/internal/testutil"
)

// TestDemoEndToEnd starts `khproxy demo`, follows its banner: lists
// products, places an order, reads it back, fetches the invoice PDF, and
// stops it.
func TestDemoEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	errc := make(chan error, 1)
	env := []string{"KH_LISTEN=127.0.0.1:0", "KH_LOG_FORMAT=json", "KH_SECRET=ignored-by-demo"}
	go func() { errc <- run(ctx, []string{"demo"}, env, stdout, stderr) }()
	addr := waitListening(t, stderr, errc)
	base := "http://" + addr

	var urls []string
	for _, m := range regexp.MustCompile(`curl -s (?:-X POST )?(\S+)`).FindAllStringSubmatch(stdout.String(), -1) {
		urls = append(urls, m[1])
	}
	if len(urls) < 4 || !strings.HasPrefix(urls[0], base) {
		t.Fatalf("banner curl commands %q do not use %s:\n%s", urls, base, stdout)
	}

	get := func(url string) (int, string, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	if code, _, body := get(base + "/v1/products"); code != 200 || !strings.Contains(string(body), `"id":42`) {
		t.Fatalf("products: %d %s", code, body)
	}
	resp, err := http.Post(base+"/v1/orders", "application/json", strings.NewReader(`{"product_id":42,"billing_cycle":"monthly"}`))
	if err != nil {
		t.Fatal(err)
	}
	var order struct {
		ID int64 `json:"id"`
	}
	json.NewDecoder(resp.Body).Decode(&order)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Idempotency-Key") == "" {
		t.Fatalf("order: status %d, Idempotency-Key %q", resp.StatusCode, resp.Header.Get("Idempotency-Key"))
	}
	if code, _, body := get(fmt.Sprintf("%s/v1/orders/%d", base, order.ID)); code != 200 || !strings.Contains(string(body), `"product_id":42`) {
		t.Errorf("read back: %d %s", code, body)
	}
	// Every command the banner suggests works after one order.
	for _, u := range urls {
		if strings.HasSuffix(u, "/v1/orders") {
			continue
		}
		code, ctype, body := get(u)
		if code != 200 {
			t.Errorf("banner URL %s: %d %s", u, code, body)
		}
		if strings.HasSuffix(u, "/pdf") && (ctype != "application/pdf" || !strings.HasPrefix(string(body), "%PDF-")) {
			t.Errorf("invoice: %s, %q", ctype, body[:min(len(body), 8)])
		}
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("demo ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop")
	}
}

func TestDemoRefusesArguments(t *testing.T) {
	if err := run(context.Background(), []string{"demo", "extra"}, nil, io.Discard, io.Discard); err == nil {
		t.Error("demo with arguments succeeded")
	}
}
