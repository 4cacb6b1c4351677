package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"khproxy/bench/internal/benchproc"
	"khproxy/emulator"
)

// options are the soak's flags.
type options struct {
	minutes         float64
	rate            float64
	inProgress      string
	seed            uint64
	faultRate       float64
	upstreamTimeout time.Duration
	purchaseTimeout time.Duration
	redisDown       time.Duration
	khproxy         string
	logs            string
}

// maxPurchases keeps a run within the emulator's 10,000 orders.
const maxPurchases = 9000

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Float64Var(&o.minutes, "minutes", 10, "how long purchases are started, in minutes (fractions allowed)")
	fs.Float64Var(&o.rate, "rate", 8, "purchases started per second")
	fs.StringVar(&o.inProgress, "in-progress", "409", "what the emulator answers a request whose key is still being answered: 409 or replay (the spec does not say)")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the purchases and of the emulator's faults (0: random, printed)")
	fs.Float64Var(&o.faultRate, "fault-rate", 0.03, "rate of each random fault: 503 and 429 before work; drop, 500 and slow answer after commit")
	fs.DurationVar(&o.upstreamTimeout, "upstream-timeout", 2*time.Second, "khproxy's KH_UPSTREAM_TIMEOUT; slow answers come 1.5 s after it")
	fs.DurationVar(&o.purchaseTimeout, "purchase-timeout", 3*time.Minute, "how long a caller keeps retrying one purchase")
	fs.DurationVar(&o.redisDown, "redis-down", 2*time.Second, "how long Redis stays down when it is restarted half-way")
	fs.StringVar(&o.khproxy, "khproxy", "", "khproxy binary to run (default: built from this checkout)")
	fs.StringVar(&o.logs, "logs", "", "directory for the processes' output (default: a temporary one)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case !(o.minutes > 0):
		return o, errors.New("-minutes must be positive")
	case !(o.rate > 0 && o.rate <= 100):
		return o, errors.New("-rate must be above 0 and at most 100")
	case o.inProgress != "409" && o.inProgress != "replay":
		return o, fmt.Errorf("-in-progress %q: want 409 or replay", o.inProgress)
	case !(o.faultRate >= 0 && o.faultRate <= 0.3):
		return o, errors.New("-fault-rate must be from 0 to 0.3")
	case o.upstreamTimeout < 500*time.Millisecond:
		return o, errors.New("-upstream-timeout must be at least 500ms")
	case o.purchaseTimeout < 10*time.Second:
		return o, errors.New("-purchase-timeout must be at least 10s")
	case o.redisDown < 0 || o.redisDown > time.Minute:
		return o, errors.New("-redis-down must be from 0 to 1m")
	}
	if n := o.rate * o.minutes * 60 * 41 / 40; n > maxPurchases {
		return o, fmt.Errorf("-rate %g for -minutes %g makes about %.0f orders; the emulator holds at most 10,000 (keep it under %d)", o.rate, o.minutes, n, maxPurchases)
	}
	if o.seed == 0 {
		o.seed = rand.Uint64N(1 << 31)
	}
	return o, nil
}

func (o options) duration() time.Duration { return time.Duration(o.minutes * float64(time.Minute)) }

// slowDelay is how late the emulator's slow answers come: past khproxy's
// upstream timeout.
func (o options) slowDelay() time.Duration { return o.upstreamTimeout + 1500*time.Millisecond }

// clockEvery is how often the emulator's clock offset steps: about eight
// times a run, at most every 30 s and at least every 5 s.
func (o options) clockEvery() time.Duration {
	return min(max(o.duration()/8, 5*time.Second), 30*time.Second)
}

// soak is one run: its processes and where their output goes.
type soak struct {
	o        options
	stderr   io.Writer
	dir      string
	keepLogs bool
	files    []*os.File

	bin       string
	key       string
	secret    string
	redisPort int
	redis     *benchproc.Proc
	emu       *benchproc.Proc
	replicas  [2]*benchproc.Proc
	emuURL    string // http://host:port
}

func newSoak(o options, stderr io.Writer) (*soak, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, errors.New("redis-server is not installed (Debian: apt-get install redis-server)")
	}
	s := &soak{o: o, stderr: stderr, dir: o.logs, keepLogs: o.logs != ""}
	if s.dir == "" {
		d, err := os.MkdirTemp("", "khsoak-")
		if err != nil {
			return nil, err
		}
		s.dir = d
	} else if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	var err error
	if s.key, s.secret, err = emulator.NewCredentials(); err != nil {
		return nil, err
	}
	return s, nil
}

// close stops every process and removes the output unless it is kept.
func (s *soak) close() {
	for _, p := range []*benchproc.Proc{s.replicas[1], s.replicas[0], s.emu, s.redis} {
		if p != nil {
			p.Stop()
		}
	}
	for _, f := range s.files {
		_ = f.Close()
	}
	if !s.keepLogs {
		_ = os.RemoveAll(s.dir)
	}
}

func (s *soak) logf(format string, args ...any) {
	fmt.Fprintf(s.stderr, "soak: "+format+"\n", args...)
}

// logFile creates a file for one process's output under s.dir.
func (s *soak) logFile(name string) (*os.File, error) {
	f, err := os.Create(filepath.Join(s.dir, name))
	if err == nil {
		s.files = append(s.files, f)
	}
	return f, err
}

// start builds khproxy and starts Redis, the emulator and both replicas.
func (s *soak) start(ctx context.Context) error {
	s.bin = s.o.khproxy
	if s.bin == "" {
		s.bin = filepath.Join(s.dir, "khproxy")
		s.logf("building khproxy from this checkout")
		if err := buildKhproxy(ctx, s.bin); err != nil {
			return err
		}
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.redisPort = port
	if err := s.startRedis(); err != nil {
		return err
	}
	if err := s.startEmulator(); err != nil {
		return err
	}
	for i := range s.replicas {
		if err := s.startReplica(i); err != nil {
			return err
		}
	}
	s.logf("redis 127.0.0.1:%d, emulator %s, replicas %s and %s; output in %s", s.redisPort, s.emuURL,
		s.replicas[0].Addrs["http"], s.replicas[1].Addrs["http"], s.dir)
	return nil
}

// buildKhproxy builds the module's main package (found with go env GOMOD)
// into bin.
func buildKhproxy(ctx context.Context, bin string) error {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return fmt.Errorf("cannot find khproxy's go.mod (run from the checkout): %v", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startRedis starts redis-server on s.redisPort, without persistence, its
// log to redis.log (appended across restarts).
func (s *soak) startRedis() error {
	f, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	s.files = append(s.files, f)
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(s.redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--logfile", "")
	s.redis, err = benchproc.StartLogged("redis-server", cmd, false, f, func(line string, _ map[string]string) bool {
		return strings.Contains(line, "Ready to accept connections")
	})
	return err
}

// restartRedis stops Redis, leaves it down for down, and starts it again,
// empty, on the same port.
func (s *soak) restartRedis(down time.Duration) error {
	s.redis.Stop()
	time.Sleep(down)
	return s.startRedis()
}

// startEmulator starts "khproxy emulator" with the soak's faults.
func (s *soak) startEmulator() error {
	out, err := s.logFile("emulator.log")
	if err != nil {
		return err
	}
	r := strconv.FormatFloat(s.o.faultRate, 'f', -1, 64)
	cmd := exec.Command(s.bin, "emulator", "-listen", "127.0.0.1:0", "-key", s.key, "-secret", s.secret,
		"-scopes", "all", "-no-rate-limit", "-balance", "100000", "-card", "valid",
		"-payment-delay", "0", "-provision-delay", "0", "-webhook-retries", "none",
		"-in-progress", s.o.inProgress, "-retry-after", "1s",
		"-random-unavailable", r, "-random-rate-limited", r,
		"-random-drop-after-commit", r, "-random-fail-after-commit", r, "-random-slow-after-commit", r,
		"-random-slow-delay", s.o.slowDelay().String(),
		"-clock-walk-step", "200s", "-clock-walk-every", s.o.clockEvery().String(), "-clock-walk-max", "400s",
		"-random-seed", strconv.FormatUint(s.o.seed, 10))
	cmd.Stderr = out
	s.emu, err = benchproc.StartLogged("emulator", cmd, false, out, func(line string, addrs map[string]string) bool {
		if a, ok := strings.CutPrefix(line, "listening on http://"); ok {
			addrs["http"] = a
			return true
		}
		return false
	})
	if err != nil {
		return err
	}
	s.emuURL = "http://" + s.emu.Addrs["http"]
	return nil
}

// startReplica starts khproxy replica i against the emulator and Redis.
func (s *soak) startReplica(i int) error {
	out, err := s.logFile(fmt.Sprintf("khproxy-%d.log", i))
	if err != nil {
		return err
	}
	s.replicas[i], err = benchproc.StartKhproxy(fmt.Sprintf("khproxy %d", i), s.bin, []string{
		"KH_KEY=" + s.key, "KH_SECRET=" + s.secret,
		"KH_UPSTREAM=" + s.emuURL + emulator.DefaultBasePath,
		"KH_LISTEN=127.0.0.1:0", "KH_ADMIN_LISTEN=127.0.0.1:0", "KH_LOG_FORMAT=json",
		"KH_RATE_LIMIT=off", "KH_SHUTDOWN_DELAY=0s",
		"KH_REDIS_URL=redis://127.0.0.1:" + strconv.Itoa(s.redisPort) + "/0",
		"KH_UPSTREAM_TIMEOUT=" + s.o.upstreamTimeout.String(),
	}, out)
	return err
}

// emulatorOrders returns the emulator's orders per label (GET
// /__emulator/orders); orders without a label count under "".
func (s *soak) emulatorOrders(ctx context.Context) (map[string][]int64, error) {
	var v struct {
		Orders []struct {
			ID    int64  `json:"id"`
			Label string `json:"label"`
		} `json:"orders"`
	}
	if err := s.control(ctx, "orders", &v); err != nil {
		return nil, err
	}
	out := map[string][]int64{}
	for _, o := range v.Orders {
		out[o.Label] = append(out[o.Label], o.ID)
	}
	return out, nil
}

// control GETs one control route of the emulator into v.
func (s *soak) control(ctx context.Context, route string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.emuURL+emulator.ControlPath+route, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("emulator %s: %w", route, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("emulator %s: status %d", route, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
