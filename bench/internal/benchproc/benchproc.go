// Package benchproc starts and watches the processes of khproxy's
// benchmarks and soak (bench, bench/soak): a process announces where it
// listens on its output, is killed when the benchmark dies, and reports
// its memory and open files. It knows nothing of what the processes are,
// except StartKhproxy, which reads khproxy's start-up log line.
package benchproc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a process the benchmark started; Stop ends it. Its methods are
// safe for concurrent use.
type Proc struct {
	Name  string
	Cmd   *exec.Cmd
	Addrs map[string]string // e.g. "http"/"https" -> host:port, as it announced; written only before Start returns

	exited chan struct{} // closed once it has exited
	err    error         // its exit status, once exited

	tail tailBuffer // its last output, for error messages
}

// Start starts cmd and reads its stdout (or stderr, for khproxy, whose
// log says where it listens) line by line through ready until ready returns
// true, then keeps draining it. The process gets SIGKILL if the benchmark
// dies first. It is StartLogged without a log.
func Start(name string, cmd *exec.Cmd, fromStderr bool, ready func(line string, addrs map[string]string) bool) (*Proc, error) {
	return StartLogged(name, cmd, fromStderr, nil, ready)
}

// StartLogged is Start that also copies all of the output read (stdout, or
// stderr with fromStderr) to log when log is not nil. The other stream
// goes to cmd.Stderr when set, else to this process's stderr. It waits at most 15 s for ready.
func StartLogged(name string, cmd *exec.Cmd, fromStderr bool, log io.Writer, ready func(line string, addrs map[string]string) bool) (*Proc, error) {
	p := &Proc{Name: name, Cmd: cmd, Addrs: map[string]string{}, exited: make(chan struct{})}
	var sink io.Writer = &p.tail
	if log != nil {
		sink = io.MultiWriter(&p.tail, log)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var out io.ReadCloser
	var err error
	if fromStderr {
		out, err = cmd.StderrPipe()
	} else {
		if cmd.Stderr == nil {
			cmd.Stderr = os.Stderr
		}
		out, err = cmd.StdoutPipe()
	}
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	readyc := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(sink, "%s\n", sc.Bytes())
			if ready(sc.Text(), p.Addrs) {
				close(readyc)
				break
			}
		}
		// From here on (khproxy's access log) only the end is kept.
		_, _ = io.Copy(sink, out)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	select {
	case <-readyc:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited before it was ready (%v):\n%s", name, p.err, p.LastLines())
	case <-time.After(15 * time.Second):
		p.Stop()
		return nil, fmt.Errorf("%s not ready after 15s:\n%s", name, p.LastLines())
	}
}

// tailBuffer keeps about the last 4 KiB written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 8<<10 {
		t.b = append(t.b[:0], t.b[len(t.b)-4<<10:]...)
	}
	return len(p), nil
}

// LastLines returns about the last 4 KiB of the output read.
func (p *Proc) LastLines() string {
	p.tail.mu.Lock()
	defer p.tail.mu.Unlock()
	return string(p.tail.b)
}

// Stop sends SIGTERM, waits up to 10s, then kills. It is safe to call twice.
func (p *Proc) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.exited
	}
}

// Pid returns the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Alive reports an error when the process has exited.
func (p *Proc) Alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v):\n%s", p.Name, p.err, p.LastLines())
	default:
		return nil
	}
}

// Memory returns VmHWM (peak resident set since start or the last reset)
// and VmRSS from /proc/PID/status, in bytes.
func (p *Proc) Memory() (peak, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q: %w", k, v, err)
		}
		if k == "VmHWM" {
			peak = kb << 10
		} else {
			rss = kb << 10
		}
	}
	if peak == 0 || rss == 0 {
		return 0, 0, errors.New("no VmHWM/VmRSS in /proc status")
	}
	return peak, rss, nil
}

// FDs returns the number of open file descriptors (entries of
// /proc/PID/fd).
func (p *Proc) FDs() (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
	return len(ents), err
}

// PeakMeter measures a process's peak resident set over one measurement:
// VmHWM after resetting it (writing 5 to /proc/PID/clear_refs), or, where
// the kernel does not allow that, the largest VmRSS sampled every 20ms.
type PeakMeter struct {
	p     *Proc
	reset bool
	quit  chan struct{}
	done  chan struct{}
	max   int64
}

// StartPeak starts measuring p's peak resident set.
func StartPeak(p *Proc) *PeakMeter {
	m := &PeakMeter{p: p, quit: make(chan struct{}), done: make(chan struct{})}
	m.reset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.Pid()), []byte("5"), 0) == nil
	go func() {
		defer close(m.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if _, rss, err := p.Memory(); err == nil {
				m.max = max(m.max, rss)
			}
			select {
			case <-m.quit:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

// Stop ends the measurement and returns the peak in bytes.
func (m *PeakMeter) Stop() int64 {
	close(m.quit)
	<-m.done
	if peak, _, err := m.p.Memory(); err == nil && m.reset {
		return max(peak, m.max)
	}
	return m.max
}

// StartKhproxy starts the khproxy binary bin configured by env only (plus
// PATH), as a user would run it, with its log copied to log (nil: none),
// and waits for its "khproxy listening" line (JSON: KH_LOG_FORMAT=json
// must be in env); Addrs["http"] is then where it listens.
func StartKhproxy(name, bin string, env []string, log io.Writer) (*Proc, error) {
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	return StartLogged(name, cmd, true, log, func(line string, addrs map[string]string) bool {
		var m struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "khproxy listening" {
			addrs["http"] = m.Addr
			return true
		}
		return false
	})
}
