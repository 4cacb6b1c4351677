package bufresp_test

import (
	"net/http"
	"testing"

	"khproxy/internal/bufresp"
)

func TestWriterKeepsTheFirstStatus(t *testing.T) {
	tests := []struct {
		name       string
		write      func(w *bufresp.Writer)
		wantStatus int
		wantBody   string
	}{
		{"nothing written", func(*bufresp.Writer) {}, 0, ""},
		{"body alone is 200", func(w *bufresp.Writer) { w.Write([]byte("hi")) }, 200, "hi"},
		{"first status wins", func(w *bufresp.Writer) {
			w.WriteHeader(http.StatusTeapot)
			w.WriteHeader(http.StatusOK)
			w.Write([]byte("x"))
		}, http.StatusTeapot, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := bufresp.New()
			w.Header().Set("A", "b")
			tt.write(w)
			if got, want := w.Status, tt.wantStatus; got != want {
				t.Errorf("Status = %d, want %d", got, want)
			}
			if got, want := w.Body.String(), tt.wantBody; got != want {
				t.Errorf("Body = %q, want %q", got, want)
			}
			if got := w.Header().Get("A"); got != "b" {
				t.Errorf("header A = %q, want b", got)
			}
		})
	}
}
