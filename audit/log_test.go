package audit_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"khproxy/audit"
)

// writeLog appends n records to a new log in a temporary directory and
// returns its path.
func writeLog(t testing.TB, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range n {
		rec := &audit.Record{Time: "2026-12-06T12:00:00Z", ID: "id", Client: "127.0.0.1:1", Method: "POST",
			Path: "/v1/orders", Route: "/v1/orders", Status: 201, Sent: true, UpstreamStatus: 201,
			OrderID: string(rune('1' + i)), Amount: "9.99", Currency: "EUR"}
		if i == 1 {
			rec = &audit.Record{Time: "2026-12-06T12:00:01Z", ID: "id2", Method: "POST", Path: "/v1/orders",
				Route: "/v1/orders", Status: 429, Error: "order_limit", Rule: "order_limit"}
		}
		if err := l.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func verify(b []byte) (*audit.Summary, error) {
	var s audit.Summary
	return &s, s.Verify("audit.jsonl", bytes.NewReader(b))
}

func TestVerifyAcceptsAnUntouchedLog(t *testing.T) {
	b, err := os.ReadFile(writeLog(t, 4))
	if err != nil {
		t.Fatal(err)
	}
	s, err := verify(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.Lines != 4 || len(s.Orders) != 3 || s.Spend["EUR"] != 2997 || s.Refused["order_limit"] != 1 || s.Sent != 3 {
		t.Errorf("summary = %+v", s)
	}
	if got := s.String(); !strings.Contains(got, "spend: 29.97 EUR") || !strings.Contains(got, "refused by order_limit: 1") {
		t.Errorf("summary text:\n%s", got)
	}
	if _, err := verify(nil); err != nil {
		t.Errorf("empty log: %v", err)
	}
}

// TestVerifyRejectsEveryChange changes every byte of the log in turn, and
// removes and swaps lines, and wants each one rejected at the right line.
func TestVerifyRejectsEveryChange(t *testing.T) {
	b, err := os.ReadFile(writeLog(t, 4))
	if err != nil {
		t.Fatal(err)
	}
	lineOf := func(i int) int { return bytes.Count(b[:i], []byte("\n")) + 1 }
	for i := range b {
		for _, c := range []byte{b[i] ^ 0x01, ' '} {
			if c == b[i] {
				continue
			}
			changed := bytes.Clone(b)
			changed[i] = c
			_, err := verify(changed)
			var le *audit.LineError
			if !errors.As(err, &le) {
				t.Fatalf("byte %d (%q -> %q) changed: err = %v, want a LineError", i, b[i], c, err)
			}
			// A changed newline merges two lines: the first of them is named.
			if want := lineOf(i); le.Line != want && !(b[i] == '\n' && le.Line == want) {
				t.Errorf("byte %d of line %d changed: error names line %d: %v", i, want, le.Line, err)
			}
		}
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	lines = lines[:len(lines)-1]
	for drop := range lines {
		rest := bytes.Join(append(append([][]byte{}, lines[:drop]...), lines[drop+1:]...), nil)
		if drop == len(lines)-1 {
			continue // the last line removed: no chain can show it (Summary.LastHash can)
		}
		if _, err := verify(rest); err == nil || !strings.Contains(err.Error(), ":"+string(rune('1'+drop))+":") {
			t.Errorf("line %d removed: err = %v, want line %d named", drop+1, err, drop+1)
		}
	}
	for i := range lines {
		for j := i + 1; j < len(lines); j++ {
			swapped := append([][]byte{}, lines...)
			swapped[i], swapped[j] = swapped[j], swapped[i]
			if _, err := verify(bytes.Join(swapped, nil)); err == nil {
				t.Errorf("lines %d and %d swapped: verified", i+1, j+1)
			}
		}
	}
	if _, err := verify(b[:len(b)-1]); err == nil {
		t.Error("a last line without its newline verified")
	}
	s, _ := verify(b)
	if short, _ := verify(bytes.Join(lines[:3], nil)); short.LastHash[0] == s.LastHash[0] {
		t.Error("cutting the last line off left the last hash unchanged")
	}
}

func TestOpenContinuesTheChain(t *testing.T) {
	path := writeLog(t, 2)
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append(&audit.Record{Time: "2026-12-06T13:00:00Z", Method: "PUT", Path: "/v1/webhooks", Route: "/v1/webhooks", Status: 200}); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Open(path, audit.Options{}); err == nil || !strings.Contains(err.Error(), "another khproxy") {
		t.Errorf("second Open of a file in use: err = %v, want refused", err)
	}
	l.Close()
	b, _ := os.ReadFile(path)
	if s, err := verify(b); err != nil || s.Lines != 3 {
		t.Fatalf("after a restart: %v (%+v)", err, s)
	}
}

func TestOpenRefusesABrokenEnd(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func([]byte) []byte
		want   string
	}{
		{"torn last line", func(b []byte) []byte { return append(b, `{"time":"2026`...) }, "incomplete line"},
		{"changed last line", func(b []byte) []byte { return bytes.Replace(b, []byte(`"status":201`), []byte(`"status":200`), 1) }, "does not verify"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeLog(t, 1)
			b, _ := os.ReadFile(path)
			if err := os.WriteFile(path, tt.change(b), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := audit.Open(path, audit.Options{}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
