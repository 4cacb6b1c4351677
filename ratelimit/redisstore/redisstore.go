// Package redisstore keeps ratelimit's shared state in Redis: one API key's
// token bucket (a ratelimit.Bucket) and the retry memory (a
// ratelimit.KeyStore), so that several khproxy replicas using one key stay
// under its limit together and a caller's retry reuses the Idempotency-Key
// whichever replica it reaches; and the guard's order and spend counters (a
// guard.Store, GuardStore), so that they enforce one order and spend limit.
//
// Keys are named after a hash of the API key id, never the id itself, and
// carry a hash tag so that one key's entries share a Redis Cluster slot.
// This is the only package that imports the Redis client.
package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"khproxy/ratelimit"
)

// Store is one API key's state in Redis: its retry memory, and its token
// bucket (Bucket). Create it with New; it is safe for concurrent use. It
// does not own the client.
type Store struct {
	client redis.UniversalClient
	ns     string // key prefix naming the API key's hash
	retry  string // prefix of retry memory keys
}

var _ ratelimit.KeyStore = (*Store)(nil)

// New returns the state of apiKey in client. It returns an error for an
// empty apiKey.
func New(client redis.UniversalClient, apiKey string) (*Store, error) {
	if apiKey == "" {
		return nil, errors.New("redisstore: empty API key")
	}
	sum := sha256.Sum256([]byte("khproxy\x00" + apiKey))
	ns := "khproxy:{" + hex.EncodeToString(sum[:16]) + "}:"
	return &Store{client: client, ns: ns, retry: ns + "retry:"}, nil
}

// Check pings Redis. A failing Check is not a reason to stop serving:
// khproxy then works on its local state.
func (s *Store) Check(ctx context.Context) error { return s.client.Ping(ctx).Err() }

// Bucket is the API key's token bucket in Redis, a ratelimit.Bucket. Create
// it with Store.Bucket; it is safe for concurrent use.
type Bucket struct {
	client redis.UniversalClient
	limit  ratelimit.Limit
	key    string // the bucket's hash
}

var _ ratelimit.Bucket = (*Bucket)(nil)

// Bucket returns the key's bucket paced to limit. Replicas must use the
// same limit. It returns an error for an invalid limit.
func (s *Store) Bucket(limit ratelimit.Limit) (*Bucket, error) {
	if err := limit.Check(); err != nil {
		return nil, err
	}
	if limit.Every < time.Microsecond {
		return nil, errors.New("redisstore: the token interval must be at least 1µs")
	}
	return &Bucket{client: s.client, limit: limit, key: s.ns + "bucket"}, nil
}

// run calls the bucket script and returns its {ok, µs, gen}.
func (s *Bucket) run(ctx context.Context, op string, args ...any) (bool, int64, int64, error) {
	argv := append([]any{op, s.limit.Every.Microseconds(), s.limit.Burst}, args...)
	v, err := bucketScript.Run(ctx, s.client, []string{s.key}, argv...).Int64Slice()
	if err != nil {
		return false, 0, 0, fmt.Errorf("redis %s: %w", op, err)
	}
	if len(v) != 3 {
		return false, 0, 0, fmt.Errorf("redis %s: unexpected answer %v", op, v)
	}
	return v[0] == 1, v[1], v[2], nil
}

// Reserve implements ratelimit.Bucket.
func (s *Bucket) Reserve(ctx context.Context, maxWait time.Duration) (ratelimit.Reservation, error) {
	ok, us, gen, err := s.run(ctx, "reserve", maxWait.Microseconds())
	return ratelimit.Reservation{OK: ok, Delay: time.Duration(us) * time.Microsecond, Gen: gen}, err
}

// Cancel implements ratelimit.Bucket.
func (s *Bucket) Cancel(ctx context.Context, r ratelimit.Reservation) error {
	if !r.OK {
		return nil
	}
	_, _, _, err := s.run(ctx, "cancel", r.Gen)
	return err
}

// Valid implements ratelimit.Bucket.
func (s *Bucket) Valid(ctx context.Context, r ratelimit.Reservation) (bool, error) {
	_, _, gen, err := s.run(ctx, "gen")
	return err == nil && gen == r.Gen, err
}

// Pause implements ratelimit.Bucket.
func (s *Bucket) Pause(ctx context.Context, d time.Duration) error {
	_, _, _, err := s.run(ctx, "pause", d.Microseconds())
	return err
}

// Sync implements ratelimit.Bucket.
func (s *Bucket) Sync(ctx context.Context, remaining int, full time.Duration) error {
	_, _, _, err := s.run(ctx, "sync", remaining, full.Microseconds())
	return err
}

// Tokens implements ratelimit.Bucket.
func (s *Bucket) Tokens(ctx context.Context) (float64, error) {
	_, us, _, err := s.run(ctx, "tokens")
	return float64(us) / float64(s.limit.Every.Microseconds()), err
}

// Get implements ratelimit.KeyStore.
func (s *Store) Get(ctx context.Context, fp string) (string, bool, error) {
	v, err := s.client.Get(ctx, s.retry+fp).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("redis get: %w", err)
	}
	return v, true, nil
}

// Put implements ratelimit.KeyStore.
func (s *Store) Put(ctx context.Context, fp, key string, ttl time.Duration) error {
	if err := s.client.Set(ctx, s.retry+fp, key, ttl).Err(); err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	return nil
}

// PutIfAbsent implements ratelimit.KeyStore.
func (s *Store) PutIfAbsent(ctx context.Context, fp, key string, ttl time.Duration) error {
	err := s.client.SetArgs(ctx, s.retry+fp, key, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if err != nil && !errors.Is(err, redis.Nil) { // Nil: it was there
		return fmt.Errorf("redis set nx: %w", err)
	}
	return nil
}

// Forget implements ratelimit.KeyStore.
func (s *Store) Forget(ctx context.Context, fp, key string) error {
	if err := forgetScript.Run(ctx, s.client, []string{s.retry + fp}, key).Err(); err != nil {
		return fmt.Errorf("redis forget: %w", err)
	}
	return nil
}

// NewClient connects to the Redis at url (redis://, rediss:// for TLS, or
// unix://), with the password read from passwordFile when it is not empty
// (one trailing newline ignored). Timeouts are short and commands are never
// resent by the client: a slow or absent Redis must cost khproxy's callers
// little, and a token script must not run twice. Errors never quote the URL,
// which may hold a password.
func NewClient(url, passwordFile string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, errors.New("not a usable Redis URL (want redis://[user:password@]host:port[/db] or rediss://...)")
	}
	if passwordFile != "" {
		if opts.Password != "" {
			return nil, errors.New("the URL holds a password and a password file is set: use one")
		}
		raw, err := os.ReadFile(passwordFile)
		if err != nil {
			return nil, fmt.Errorf("password file: %w", err)
		}
		opts.Password = strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
	}
	opts.DialTimeout = time.Second
	opts.ReadTimeout = 500 * time.Millisecond
	opts.WriteTimeout = 500 * time.Millisecond
	opts.PoolTimeout = time.Second
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts), nil
}
