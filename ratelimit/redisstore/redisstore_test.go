package redisstore_test

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"khproxy/ratelimit"
	"khproxy/ratelimit/ratelimittest"
	"khproxy/ratelimit/redisstore"
	"khproxy/ratelimit/redisstore/redistest"
)

func newClient(t testing.TB, srv *redistest.Server) *redis.Client {
	t.Helper()
	c, err := redisstore.NewClient(srv.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newStore(t testing.TB, c redis.UniversalClient) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(c, "kh_live_"+rand.Text())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newBucket(t testing.TB, s *redisstore.Store, l ratelimit.Limit) *redisstore.Bucket {
	t.Helper()
	b, err := s.Bucket(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRedisConformance(t *testing.T) {
	c := newClient(t, redistest.Start(t))
	ratelimittest.Run(t, func(t *testing.T, l ratelimit.Limit) ratelimit.Bucket {
		return newBucket(t, newStore(t, c), l)
	})
}

func TestKeysNameAHashNotTheKey(t *testing.T) {
	c := newClient(t, redistest.Start(t))
	ctx := context.Background()
	const apiKey = "kh_live_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
	s, err := redisstore.New(c, apiKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newBucket(t, s, ratelimit.Limit{Every: time.Second, Burst: 2}).Reserve(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "fp", "k1", time.Minute); err != nil {
		t.Fatal(err)
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Errorf("keys = %q, want the bucket and one retry entry", keys)
	}
	for _, k := range keys {
		if strings.Contains(k, "ABCDEFGHIJ") {
			t.Errorf("Redis key %q holds the API key", k)
		}
	}
	// Another API key has its own bucket and memory.
	other := newStore(t, c)
	if _, ok, err := other.Get(ctx, "fp"); err != nil || ok {
		t.Errorf("another key's Get = %v, %v; want nothing", ok, err)
	}
}

func TestKeyStore(t *testing.T) {
	c := newClient(t, redistest.Start(t))
	ctx := context.Background()
	s := newStore(t, c)
	get := func(fp string) string {
		t.Helper()
		k, ok, err := s.Get(ctx, fp)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return "<none>"
		}
		return k
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := get("a"); got != "<none>" {
		t.Errorf("empty Get = %q", got)
	}
	must(s.Put(ctx, "a", "k1", time.Minute))
	must(s.PutIfAbsent(ctx, "a", "k2", time.Minute))
	if got := get("a"); got != "k1" {
		t.Errorf("after PutIfAbsent over k1: %q, want k1", got)
	}
	must(s.Forget(ctx, "a", "k2"))
	if got := get("a"); got != "k1" {
		t.Errorf("after forgetting another key: %q, want k1", got)
	}
	must(s.Put(ctx, "a", "k3", time.Minute))
	if got := get("a"); got != "k3" {
		t.Errorf("after Put: %q, want k3", got)
	}
	must(s.Forget(ctx, "a", "k3"))
	if got := get("a"); got != "<none>" {
		t.Errorf("after Forget: %q, want none", got)
	}
	must(s.PutIfAbsent(ctx, "b", "k4", time.Minute))
	if got := get("b"); got != "k4" {
		t.Errorf("PutIfAbsent on nothing: %q, want k4", got)
	}
	ttl, err := c.PTTL(ctx, mustKey(t, c, "*retry:b")).Result()
	if err != nil || ttl <= 50*time.Second || ttl > time.Minute {
		t.Errorf("TTL = %s, %v; want about a minute", ttl, err)
	}
}

func mustKey(t *testing.T, c *redis.Client, pattern string) string {
	t.Helper()
	keys, err := c.Keys(context.Background(), pattern).Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("keys %s = %q, %v", pattern, keys, err)
	}
	return keys[0]
}

func TestNewClient(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, url, file string
		wantErr         string
	}{
		{"plain", "redis://127.0.0.1:6379/0", "", ""},
		{"tls", "rediss://redis.example:6380", "", ""},
		{"password file", "redis://127.0.0.1:6379", pw, ""},
		{"not redis", "http://127.0.0.1:6379", "", "not a usable Redis URL"},
		{"both passwords", "redis://:hunter2@127.0.0.1:6379", pw, "use one"},
		{"missing file", "redis://127.0.0.1:6379", filepath.Join(dir, "nope"), "password file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := redisstore.NewClient(tt.url, tt.file)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error quotes the password: %v", err)
			}
		})
	}
}

func TestPasswordFileAuthenticates(t *testing.T) {
	srv := redistest.Start(t)
	admin := newClient(t, srv)
	ctx := context.Background()
	if err := admin.ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := redisstore.NewClient(srv.URL(), pw)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := newStore(t, c)
	if err := s.Check(ctx); err != nil {
		t.Errorf("Check with the password file: %v", err)
	}
	wrong, err := redisstore.NewClient(srv.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	if err := newStore(t, wrong).Check(ctx); err == nil {
		t.Error("Check without the password succeeded")
	}
}
