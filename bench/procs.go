package main

import (
	"bufio"
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

// proc is a process the benchmark started; stop ends it.
type proc struct {
	name   string
	cmd    *exec.Cmd
	addrs  map[string]string // "http"/"https" -> host:port, as it announced
	exited chan struct{}     // closed once it has exited
	err    error             // its exit status, once exited

	tail tailBuffer // its last output, for error messages
}

// startProc starts cmd and reads its stdout (or stderr, for khproxy, whose
// log says where it listens) line by line through ready until ready returns
// true, then keeps draining it. The process gets SIGKILL if the benchmark
// dies first.
func startProc(name string, cmd *exec.Cmd, fromStderr bool, ready func(line string, addrs map[string]string) bool) (*proc, error) {
	p := &proc{name: name, cmd: cmd, addrs: map[string]string{}, exited: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var out io.ReadCloser
	var err error
	if fromStderr {
		out, err = cmd.StderrPipe()
	} else {
		cmd.Stderr = os.Stderr
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
			fmt.Fprintf(&p.tail, "%s\n", sc.Bytes())
			if ready(sc.Text(), p.addrs) {
				close(readyc)
				break
			}
		}
		// From here on (khproxy's access log) only the end is kept.
		_, _ = io.Copy(&p.tail, out)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	select {
	case <-readyc:
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("%s exited before it was ready (%v):\n%s", name, p.err, p.lastLines())
	case <-time.After(15 * time.Second):
		p.stop()
		return nil, fmt.Errorf("%s not ready after 15s:\n%s", name, p.lastLines())
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

func (p *proc) lastLines() string {
	p.tail.mu.Lock()
	defer p.tail.mu.Unlock()
	return string(p.tail.b)
}

// stop sends SIGTERM, waits up to 10s, then kills. It is safe to call twice.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// alive reports an error when the process has exited.
func (p *proc) alive() error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.lastLines())
	default:
		return nil
	}
}

// memory returns VmHWM (peak resident set since start or the last reset)
// and VmRSS from /proc/PID/status, in bytes.
func (p *proc) memory() (peak, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
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

// peakMeter measures a process's peak resident set over one measurement:
// VmHWM after resetting it (writing 5 to /proc/PID/clear_refs), or, where
// the kernel does not allow that, the largest VmRSS sampled every 20ms.
type peakMeter struct {
	p     *proc
	reset bool
	quit  chan struct{}
	done  chan struct{}
	max   int64
}

func startPeak(p *proc) *peakMeter {
	m := &peakMeter{p: p, quit: make(chan struct{}), done: make(chan struct{})}
	m.reset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.cmd.Process.Pid), []byte("5"), 0) == nil
	go func() {
		defer close(m.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if _, rss, err := p.memory(); err == nil {
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

// stop ends the measurement and returns the peak in bytes.
func (m *peakMeter) stop() int64 {
	close(m.quit)
	<-m.done
	if peak, _, err := m.p.memory(); err == nil && m.reset {
		return max(peak, m.max)
	}
	return m.max
}
