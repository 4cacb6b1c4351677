package problem_test

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"testing"

	"khproxy/problem"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name       string
		in         problem.Details
		wantStatus int
		wantTitle  string
	}{
		{"full", problem.Details{Type: "t", Title: "Nope", Status: 402, Detail: "d", RequestID: "r", Reason: "why"}, 402, "Nope"},
		{"title from status", problem.Details{Type: "t", Status: 404}, 404, "Not Found"},
		{"zero value", problem.Details{}, 500, "Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			problem.Write(w, tt.in)
			if w.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tt.wantStatus)
			}
			if got := w.Header().Get("Content-Type"); got != problem.ContentType {
				t.Errorf("Content-Type = %q", got)
			}
			if got, want := w.Header().Get("Content-Length"), strconv.Itoa(w.Body.Len()); got != want {
				t.Errorf("Content-Length = %s, body has %s bytes", got, want)
			}
			var got problem.Details
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Status != tt.wantStatus || got.Title != tt.wantTitle {
				t.Errorf("body status/title = %d %q, want %d %q", got.Status, got.Title, tt.wantStatus, tt.wantTitle)
			}
			if tt.in.Reason != "" && got.Reason != tt.in.Reason {
				t.Errorf("reason = %q", got.Reason)
			}
		})
	}
}

func TestRenderIsWhatWriteSends(t *testing.T) {
	for _, in := range []problem.Details{{Type: "t", Status: 405, Detail: "d"}, {}} {
		w := httptest.NewRecorder()
		problem.Write(w, in)
		status, h, body := problem.Render(in)
		if status != w.Code || string(body) != w.Body.String() {
			t.Errorf("Render(%+v) = %d %s, Write sent %d %s", in, status, body, w.Code, w.Body)
		}
		for _, name := range []string{"Content-Type", "Content-Length", "X-Content-Type-Options"} {
			if h.Get(name) == "" || h.Get(name) != w.Header().Get(name) {
				t.Errorf("%s: Render %q, Write %q", name, h.Get(name), w.Header().Get(name))
			}
		}
	}
}
