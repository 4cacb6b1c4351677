// Command attacks repeats, against a built khproxy, the listener attacks of
// issue 19 and reports what a good client gets, or khproxy's memory and
// open files, on loopback only: it starts an upstream in this process and a
// fresh khproxy per run.
//
// Scenarios (-s):
//
//	headeronly  two connections declare a 1 MiB body and send only headers;
//	            then one order. Reports its status and latency.
//	chunked     -n connections start a chunked upload and stall; then one
//	            order. Reports its status and latency.
//	idle        at KH_MAX_CONNS=64, -n clients make one request each and stay
//	            connected, idle; then a new client polls every 0.5 s for up to
//	            20 s. Reports how long until it got 200.
//	webhook     -n deliveries with a signature header that parses (zeros)
//	            send 1 MiB minus one byte of a declared 1 MiB and stall.
//	            Reports khproxy's RSS and peak RSS after 5 s.
//	admin       -n connections to the admin listener that send nothing.
//	            Reports khproxy's open files and RSS after 2 s.
//
// Run it against two builds to compare, e.g.:
//
//	go build -o /tmp/kh . && go run ./bench/attacks -bin /tmp/kh -s webhook -n 300
//
// Benchmarks are not tests: the figures depend on the machine.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"time"
)

func main() {
	bin := flag.String("bin", "", "the khproxy binary to attack (required)")
	scenario := flag.String("s", "", "headeronly, chunked, idle, webhook or admin")
	n := flag.Int("n", 100, "connections or clients")
	flag.Parse()
	if *bin == "" {
		log.Fatal("-bin is required")
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"ok":true}`)
	}))
	defer up.Close()
	a := attack{bin: *bin, n: *n, up: up.URL, listen: freeAddr(), hook: freeAddr(), admin: freeAddr()}
	switch *scenario {
	case "headeronly":
		a.orderBeside(2, "Content-Length: 1048576")
	case "chunked":
		a.orderBeside(a.n, "Transfer-Encoding: chunked")
	case "idle":
		a.idle()
	case "webhook":
		a.webhook()
	case "admin":
		a.adminFlood()
	default:
		log.Fatalf("unknown scenario %q", *scenario)
	}
}

type attack struct {
	bin                     string
	n                       int
	up, listen, hook, admin string
}

// freeAddr returns a loopback address free a moment ago.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs khproxy with env added to a minimal configuration, waits for
// its signing listener and returns its process and a function to stop it.
func (a attack) start(env ...string) (*os.Process, func()) {
	cmd := exec.Command(a.bin)
	cmd.Env = append([]string{"KH_KEY=kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "KH_SECRET=test-secret-0123456789abcdefghij",
		"KH_UPSTREAM=" + a.up, "KH_LISTEN=" + a.listen, "KH_LOG_LEVEL=error", "KH_SHUTDOWN_DELAY=0s", "KH_RATE_LIMIT=off"}, env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", a.listen); err == nil {
			c.Close()
			time.Sleep(200 * time.Millisecond) // the other listeners
			return cmd.Process, func() { cmd.Process.Kill(); cmd.Wait() }
		}
	}
	log.Fatal("khproxy did not start")
	return nil, nil
}

func dial(addr string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	return c
}

// orderBeside stalls n uploads framed by framing, then times one order.
func (a attack) orderBeside(n int, framing string) {
	_, stop := a.start("KH_ADMIN_LISTEN=")
	defer stop()
	for range n {
		c := dial(a.listen)
		defer c.Close()
		fmt.Fprintf(c, "POST /v1/upload HTTP/1.1\r\nHost: localhost\r\n%s\r\n\r\n", framing)
	}
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	resp, err := http.Post("http://"+a.listen+"/v1/orders", "application/json", strings.NewReader(`{"product_id":1}`))
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Printf("%s: order beside %d stalled uploads (%s): %d after %s\n", a.bin, n, framing, resp.StatusCode, time.Since(start).Round(time.Millisecond))
}

func (a attack) idle() {
	_, stop := a.start("KH_ADMIN_LISTEN=", "KH_MAX_CONNS=64")
	defer stop()
	for range a.n {
		c := dial(a.listen)
		defer c.Close()
		io.WriteString(c, "GET /v1/products HTTP/1.1\r\nHost: localhost\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
			io.Copy(io.Discard, resp.Body)
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	start := time.Now()
	for time.Since(start) < 20*time.Second {
		resp, err := client.Get("http://" + a.listen + "/v1/products")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Printf("%s: new client beside %d idle keep-alive clients at KH_MAX_CONNS=64: 200 after %s\n", a.bin, a.n, time.Since(start).Round(time.Millisecond))
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	fmt.Printf("%s: new client beside %d idle keep-alive clients at KH_MAX_CONNS=64: refused for 20 s\n", a.bin, a.n)
}

func (a attack) webhook() {
	p, stop := a.start("KH_ADMIN_LISTEN=", "KH_WEBHOOK_LISTEN="+a.hook,
		"KH_WEBHOOK_SECRET=whsec_0123456789abcdefghijklmnop", "KH_WEBHOOK_FORWARD="+a.up+"/hooks")
	defer stop()
	body := strings.Repeat("x", 1<<20-1)
	for range a.n {
		c := dial(a.hook)
		defer c.Close()
		go fmt.Fprintf(c, "POST /hooks HTTP/1.1\r\nHost: x\r\nKH-Webhook-Signature: t=%d,v1=%s\r\nContent-Length: %d\r\n\r\n%s",
			time.Now().Unix(), strings.Repeat("0", 64), 1<<20, body)
	}
	time.Sleep(5 * time.Second)
	fmt.Printf("%s: %d stalled 1 MiB webhook deliveries: %s\n", a.bin, a.n, memory(p.Pid))
}

func (a attack) adminFlood() {
	p, stop := a.start("KH_ADMIN_LISTEN=" + a.admin)
	defer stop()
	for range a.n {
		c, err := net.Dial("tcp", a.admin)
		if err != nil {
			log.Printf("dial: %v", err)
			break
		}
		defer c.Close()
	}
	time.Sleep(2 * time.Second)
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid))
	fmt.Printf("%s: %d idle admin connections: %d open files, %s\n", a.bin, a.n, len(fds), memory(p.Pid))
}

// memory returns the process's RSS and peak RSS, from /proc.
func memory(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS") || strings.HasPrefix(line, "VmHWM") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(out, ", ")
}
