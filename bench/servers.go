package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"khproxy/internal/testutil"
)

// basePath is the upstream's API base path, as on the real API.
const basePath = "/cp/kh_reseller_api"

// verifyPath is the upstream path that checks a request's signature in full.
// The benchmark sends one request there through each khproxy before
// measuring; the measured requests are not checked, so that the upstream's
// hashing does not weigh on the comparison.
const verifyPath = "/bench/verify"

// api answers like the KernelHost Reseller API: small JSON documents, an
// X-Request-Id, 201 for a new order. It reads every body whole.
type api struct {
	key    string
	secret []byte
	ids    atomic.Uint64
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target, ok := strings.CutPrefix(r.RequestURI, basePath)
	if !ok {
		http.Error(w, "not under "+basePath, http.StatusNotFound)
		return
	}
	path, _, _ := strings.Cut(target, "?")
	if path == verifyPath {
		a.verify(w, r, target)
		return
	}
	n, err := io.Copy(io.Discard, r.Body)
	if err != nil || (r.ContentLength >= 0 && n != r.ContentLength) {
		http.Error(w, fmt.Sprintf("body: read %d of %d bytes: %v", n, r.ContentLength, err), http.StatusBadRequest)
		return
	}
	id := a.ids.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "01BENCH"+strconv.FormatUint(id, 36))
	if r.Method == http.MethodPost && path == "/v1/orders" {
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"data":{"id":%d,"status":"pending","product_id":42}}`, id)
		return
	}
	io.WriteString(w, `{"data":[{"id":42,"name":"VPS S","price":"4.99","currency":"EUR"}],"meta":{"page":1}}`)
}

// verify checks the four KH-* headers as the API documents them (spec §1),
// with the tests' oracle rather than package signer, and answers 200, or 401
// saying what is wrong.
func (a *api) verify(w http.ResponseWriter, r *http.Request, target string) {
	body, err := io.ReadAll(r.Body)
	if err == nil {
		err = testutil.VerifySignature(r.Header, a.key, string(a.secret), r.Method, target, body)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	io.WriteString(w, `{"verified":true}`)
}

// runUpstream serves the API-like upstream on a plain and, with a
// certificate, a TLS listener, and prints "http ADDR", "https ADDR" and
// "ready" on stdout.
func runUpstream(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "plain HTTP listen address (loopback only)")
	tlsListen := fs.String("tls-listen", "", "HTTPS listen address (loopback only); needs -cert and -key")
	cert := fs.String("cert", "", "PEM certificate chain for -tls-listen")
	keyFile := fs.String("key", "", "PEM private key for -tls-listen")
	key := fs.String("key-id", benchKey, "KH-Key that "+verifyPath+" accepts")
	secret := fs.String("secret", benchSecret, "secret that "+verifyPath+" checks signatures with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	h := &api{key: *key, secret: []byte(*secret)}
	ln, err := listenLoopback(*listen)
	if err != nil {
		return err
	}
	servers := []server{{ln: ln, srv: newServer(h)}}
	fmt.Fprintf(stdout, "http %s\n", ln.Addr())
	if *tlsListen != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *keyFile)
		if err != nil {
			return fmt.Errorf("upstream: -cert/-key: %w", err)
		}
		tln, err := listenLoopback(*tlsListen)
		if err != nil {
			return err
		}
		srv := newServer(h)
		// ServeTLS offers HTTP/2, as a real API's front end does.
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}}
		// Callers cut off at the end of a run abort their handshakes.
		srv.ErrorLog = log.New(io.Discard, "", 0)
		servers = append(servers, server{ln: tln, srv: srv, tls: true})
		fmt.Fprintf(stdout, "https %s\n", tln.Addr())
	}
	fmt.Fprintln(stdout, "ready")
	return serveAll(ctx, servers)
}

// runPlain serves a plain httputil.ReverseProxy to -upstream and prints
// "http ADDR" and "ready" on stdout.
func runPlain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("plain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "listen address (loopback only)")
	upstream := fs.String("upstream", "", "upstream base URL, e.g. http://127.0.0.1:9000"+basePath)
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*upstream)
	if err != nil || u.Host == "" {
		return fmt.Errorf("plain: -upstream %q is not an absolute URL", *upstream)
	}
	ln, err := listenLoopback(*listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "http %s\nready\n", ln.Addr())
	return serveAll(ctx, []server{{ln: ln, srv: newServer(newPlainProxy(u))}})
}

// newPlainProxy is a stock httputil.ReverseProxy with a connection pool sized
// for the benchmark's concurrency, as khproxy's is: the limit for a Go proxy.
func newPlainProxy(u *url.URL) *httputil.ReverseProxy {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 256
	return &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u) },
		Transport: t,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// wrk cuts its connections at the end of a run: no news.
			if !errors.Is(err, context.Canceled) {
				log.Printf("plain proxy: %v", err)
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
}

// listenLoopback listens on addr, which must name a loopback IP: the
// benchmark sends traffic to 127.0.0.1 only.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("listen %q: only loopback IP addresses, like 127.0.0.1:0", addr)
	}
	return net.Listen("tcp", addr)
}

type server struct {
	ln  net.Listener
	srv *http.Server
	tls bool // ServeTLS with srv.TLSConfig
}

func newServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
}

// serveAll serves every server until ctx is done or one fails.
func serveAll(ctx context.Context, servers []server) error {
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			if s.tls {
				errc <- s.srv.ServeTLS(s.ln, "", "")
				return
			}
			errc <- s.srv.Serve(s.ln)
		}()
	}
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.srv.Shutdown(sctx)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
