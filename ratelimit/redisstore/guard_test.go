package redisstore_test

import (
	"testing"

	"khproxy/guard"
	"khproxy/guard/guardtest"
	"khproxy/ratelimit/redisstore"
	"khproxy/ratelimit/redisstore/redistest"
)

func TestGuardStore(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	guardtest.Run(t, func(t *testing.T) guard.Store {
		client, err := redisstore.NewClient(srv.URL(), "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		n++ // a fresh API key per subtest: fresh, empty counters
		s, err := redisstore.New(client, "kh_live_GUARDTEST"+string(rune('A'+n)))
		if err != nil {
			t.Fatal(err)
		}
		return s.Guard()
	})
}
