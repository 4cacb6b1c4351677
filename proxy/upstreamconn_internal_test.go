package proxy

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
)

// recordingConn is a net.Conn whose writes are recorded; nothing else of it
// is used.
type recordingConn struct {
	net.Conn
	buf    bytes.Buffer
	writes int
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.buf.Write(p)
}

func TestUpstreamConnReadFrom(t *testing.T) {
	body := strings.Repeat("0123456789", 10000) // 100,000 bytes
	tests := []struct {
		name       string
		src        func() io.Reader
		want       string
		wantWrites int // 0: any
	}{
		{"held body in one write", func() io.Reader {
			return &io.LimitedReader{R: bytes.NewReader([]byte(body)), N: int64(len(body))}
		}, body, 1},
		{"limit below the body: only the limit", func() io.Reader {
			return &io.LimitedReader{R: bytes.NewReader([]byte(body)), N: 1234}
		}, body[:1234], 0},
		{"any other reader", func() io.Reader {
			return iotest.HalfReader(strings.NewReader(body))
		}, body, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := &recordingConn{}
			n, err := upstreamConn{rc}.ReadFrom(tt.src())
			if err != nil {
				t.Fatal(err)
			}
			if got := rc.buf.String(); n != int64(len(tt.want)) || got != tt.want {
				t.Errorf("wrote %d bytes (returned %d), want the %d bytes of the source", len(got), n, len(tt.want))
			}
			if tt.wantWrites > 0 && rc.writes != tt.wantWrites {
				t.Errorf("%d writes, want %d", rc.writes, tt.wantWrites)
			}
		})
	}
}
