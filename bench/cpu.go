package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// userHZ is the unit of the CPU times in /proc/PID/stat and /proc/stat:
// clock ticks, sysconf(_SC_CLK_TCK), what `getconf CLK_TCK` prints. Linux
// reports them to user space at a fixed USER_HZ of 100 on every architecture
// Go runs on, whatever HZ the kernel itself ticks at.
const userHZ = 100

// cpuTimes is a reading of the CPU time used so far, in clock ticks.
type cpuTimes struct {
	proc  int64 // one process's, all its threads: utime+stime
	busy  int64 // the whole machine's: user+nice+system+irq+softirq+steal
	total int64 // the whole machine's, idle and iowait too
}

// readCPU reads the CPU time of process pid and of the whole machine.
func readCPU(pid int) (cpuTimes, error) {
	var c cpuTimes
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return c, err
	}
	if c.proc, err = parseProcStat(string(b)); err != nil {
		return c, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	if b, err = os.ReadFile("/proc/stat"); err != nil {
		return c, err
	}
	if c.busy, c.total, err = parseMachineStat(string(b)); err != nil {
		return c, fmt.Errorf("/proc/stat: %w", err)
	}
	return c, nil
}

// parseProcStat returns utime+stime from the text of /proc/PID/stat. The
// second field, the command name in parentheses, may itself hold spaces and
// parentheses, so the fields are counted from the last ')'.
func parseProcStat(s string) (int64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	// After it: field 3 (state) at index 0, so utime (14) and stime (15)
	// at 11 and 12.
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	var sum int64
	for _, k := range []int{11, 12} {
		n, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("field %d: %q is not a tick count", k+3, f[k])
		}
		sum += n
	}
	return sum, nil
}

// parseMachineStat returns the busy and the total ticks of the whole machine
// from the aggregate "cpu" line of /proc/stat: user nice system idle iowait
// irq softirq steal (guest and guest_nice, when there, are already counted
// in user and nice). Busy is all but idle and iowait.
func parseMachineStat(s string) (busy, total int64, err error) {
	for line := range strings.SplitSeq(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 9 {
			return 0, 0, fmt.Errorf("cpu line has %d fields, want at least 9 (up to steal)", len(f))
		}
		for k, v := range f[1:9] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return 0, 0, fmt.Errorf("cpu line, column %d: %q is not a tick count", k+1, v)
			}
			total += n
			if k != 3 && k != 4 { // idle, iowait
				busy += n
			}
		}
		return busy, total, nil
	}
	return 0, 0, errors.New("no cpu line")
}

// cpuUse is the CPU used over one measurement.
type cpuUse struct {
	procUS    float64 // the process measured, µs per request
	machineUS float64 // the whole machine, µs per request
	busy      float64 // the whole machine's busy share, 0 to 1
}

// perRequest divides the CPU used between two readings by the requests
// served between them; with no requests it is all zero.
func perRequest(before, after cpuTimes, requests float64) cpuUse {
	var u cpuUse
	if requests > 0 {
		u.procUS = float64(after.proc-before.proc) * 1e6 / userHZ / requests
		u.machineUS = float64(after.busy-before.busy) * 1e6 / userHZ / requests
	}
	if total := after.total - before.total; total > 0 {
		u.busy = float64(after.busy-before.busy) / float64(total)
	}
	return u
}
