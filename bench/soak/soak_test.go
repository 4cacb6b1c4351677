package main

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testRNG() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

// bought is purchase n as the driver leaves it, with callers callers whose
// final answers the test fills in.
func bought(n, callers int) *purchase {
	p := newPurchase(1, n, testRNG())
	p.callers = nil
	for range callers {
		p.callers = append(p.callers, &caller{patient: true, attempts: []attempt{{status: 201}}})
	}
	return p
}

func ok(p *purchase, id int64) *answer { return &answer{status: 201, orderID: id, label: p.label} }

func TestJudge(t *testing.T) {
	one := func(n int) *purchase { return bought(n, 1) }
	tests := []struct {
		name  string
		build func() ([]*purchase, map[string][]int64)
		want  [4]int // duplicates, lost, wrong, unanswered
	}{
		{"clean", func() ([]*purchase, map[string][]int64) {
			a, b := one(0), bought(39, 2)
			a.callers[0].final = ok(a, 1001)
			b.callers[0].final, b.callers[1].final = ok(b, 1002), ok(b, 1003)
			return []*purchase{a, b}, map[string][]int64{a.label: {1001}, b.label: {1002, 1003}}
		}, [4]int{}},
		{"duplicate", func() ([]*purchase, map[string][]int64) {
			a := one(0)
			a.callers[0].final = ok(a, 1002)
			return []*purchase{a}, map[string][]int64{a.label: {1001, 1002}}
		}, [4]int{1, 0, 0, 0}},
		{"lost, and a 201 for an order that is not there", func() ([]*purchase, map[string][]int64) {
			a := one(0)
			a.callers[0].final = ok(a, 1001)
			return []*purchase{a}, map[string][]int64{}
		}, [4]int{0, 1, 1, 0}},
		{"final 409 and another purchase's order", func() ([]*purchase, map[string][]int64) {
			a, b := one(0), one(1)
			a.callers[0].final = &answer{status: 409, body: `{"reason":"request_in_progress"}`}
			b.callers[0].final = &answer{status: 201, orderID: 1001, label: a.label}
			return []*purchase{a, b}, map[string][]int64{a.label: {1001}, b.label: {1002}}
		}, [4]int{0, 0, 2, 0}},
		{"twins answered with one order", func() ([]*purchase, map[string][]int64) {
			b := bought(39, 2)
			b.callers[0].final, b.callers[1].final = ok(b, 1002), ok(b, 1002)
			return []*purchase{b}, map[string][]int64{b.label: {1002, 1003}}
		}, [4]int{0, 0, 1, 0}},
		{"twins with one order, and an unanswered caller", func() ([]*purchase, map[string][]int64) {
			b := bought(39, 2)
			b.callers[0].final = ok(b, 1002)
			return []*purchase{b}, map[string][]int64{b.label: {1002}}
		}, [4]int{0, 1, 0, 1}},
		{"an order of no purchase", func() ([]*purchase, map[string][]int64) {
			a := one(0)
			a.callers[0].final = ok(a, 1001)
			return []*purchase{a}, map[string][]int64{a.label: {1001}, "": {1002}}
		}, [4]int{1, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, orders := tt.build()
			r := judge(options{}, &results{purchases: ps, orders: orders})
			if got := [4]int{r.duplicates, r.lost, r.wrong, r.unanswered}; got != tt.want {
				t.Errorf("duplicates, lost, wrong, unanswered = %v, want %v; problems %q", got, tt.want, r.problems)
			}
			if clean := tt.want == [4]int{}; (r.failure() == nil) != clean || (len(r.problems) == 0) != clean {
				t.Errorf("failure() = %v, problems %q; want clean = %v", r.failure(), r.problems, clean)
			}
			var out strings.Builder
			r.print(&out)
			verdict := "PASS"
			if tt.want != [4]int{} {
				verdict = "FAIL"
			}
			if !strings.Contains(out.String(), "soak: "+verdict+":") {
				t.Errorf("report does not say %s:\n%s", verdict, out.String())
			}
		})
	}
}

func TestNewPurchase(t *testing.T) {
	rng := testRNG()
	own, impatient := 0, 0
	for n := range 400 {
		p := newPurchase(5, n, rng)
		if want := `{"product_id":42,"billing_cycle":"monthly","label":"` + p.label + `"}`; string(p.body) != want {
			t.Fatalf("body %s, want %s", p.body, want)
		}
		switch {
		case p.twins != (n%40 == 39):
			t.Fatalf("purchase %d: twins %v", n, p.twins)
		case p.twins && (len(p.callers) != 2 || p.ownKey != "" || !p.callers[0].patient || !p.callers[1].patient):
			t.Fatalf("twins %d: %+v", n, p)
		case !p.twins && len(p.callers) != 1:
			t.Fatalf("purchase %d: %d callers", n, len(p.callers))
		}
		if p.ownKey != "" {
			own++
		}
		if c := p.callers[0]; !c.patient {
			impatient++
			if c.timeout < impatientMin || c.timeout >= impatientMin+impatientSpan {
				t.Errorf("impatient timeout %v", c.timeout)
			}
		}
	}
	if own < 150 || own > 240 || impatient < 150 || impatient > 240 {
		t.Errorf("of 390 single purchases, %d with their own key and %d impatient; want about half each", own, impatient)
	}
}

func TestRetryable(t *testing.T) {
	for _, tt := range []struct {
		status int
		reason string
		want   bool
	}{
		{201, "", false}, {400, "", false}, {401, "timestamp_out_of_window", false}, {402, "", false},
		{409, "body_mismatch", false}, {409, "request_in_progress", true}, {408, "", true}, {425, "", true},
		{429, "", true}, {500, "", true}, {502, "", true}, {503, "", true}, {504, "", true},
	} {
		if got := retryable(tt.status, tt.reason); got != tt.want {
			t.Errorf("retryable(%d, %q) = %v, want %v", tt.status, tt.reason, got, tt.want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	for _, args := range [][]string{
		{"-minutes", "0"}, {"-rate", "0"}, {"-rate", "101"}, {"-in-progress", "wait"}, {"-fault-rate", "0.5"},
		{"-upstream-timeout", "100ms"}, {"-purchase-timeout", "1s"}, {"-redis-down", "-1s"}, {"-minutes", "30", "-rate", "8"}, {"extra"},
	} {
		if _, err := parseOptions(args, io.Discard); err == nil {
			t.Errorf("parseOptions(%q): want an error", args)
		}
	}
	o, err := parseOptions([]string{"-minutes", "0.5", "-in-progress", "replay"}, io.Discard)
	if err != nil || o.duration() != 30*time.Second || o.seed == 0 || o.clockEvery() != 5*time.Second {
		t.Errorf("parseOptions: %+v, %v", o, err)
	}
}

// TestSoak runs a 20 s soak in each -in-progress mode: two khproxy
// replicas, redis-server, the emulator with faults. It takes about a
// minute (the build, two runs, and waiting for late orders), so it runs
// only with KH_SOAK=1, and never under -short.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a soak under -short")
	}
	if os.Getenv("KH_SOAK") != "1" {
		t.Skip("set KH_SOAK=1 to run a 20 s soak in each -in-progress mode (about a minute)")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (apt-get install redis-server)")
	}
	bin := filepath.Join(t.TempDir(), "khproxy")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := buildKhproxy(ctx, bin); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"409", "replay"} {
		t.Run(mode, func(t *testing.T) {
			var out, progress strings.Builder
			err := run(ctx, []string{"-minutes", "0.33", "-seed", "18", "-in-progress", mode, "-khproxy", bin}, &out, &progress)
			t.Log("\n" + out.String())
			if err != nil {
				t.Fatalf("soak: %v\nprogress:\n%s", err, progress.String())
			}
			if !strings.Contains(out.String(), "soak: PASS: duplicates 0, lost 0, wrong answers 0, unanswered 0") {
				t.Errorf("no PASS line")
			}
		})
	}
}
