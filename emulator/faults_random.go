package emulator

import (
	"errors"
	"math/rand/v2"
	"time"
)

// RandomFaults inject faults at random, at given rates, for soak tests
// (see bench/soak). Rates are shares from 0 to 1. The zero value injects
// none. The draws come from one random source seeded with Seed, so a run
// with the same seed and the same sequence of requests sees the same
// faults (concurrent requests make the sequence itself vary).
type RandomFaults struct {
	// Unavailable and RateLimited are the shares of API requests (any
	// path, health included; not the control endpoint) answered before
	// any work with 503 internal_error and with 429 rate_limited, both
	// with reason injected_fault and Faults.RetryAfter as for FailCount.
	// Their sum must not exceed 1.
	Unavailable float64
	RateLimited float64

	// DropAfterCommit, FailAfterCommit and SlowAfterCommit are the shares
	// of committed writes (see Faults) whose connection is dropped after
	// the commit, that are answered 500 after the commit, and that are
	// answered only after SlowDelay (the key in progress meanwhile). At
	// most one fires per write; their sum must not exceed 1, and
	// SlowAfterCommit needs SlowDelay > 0.
	DropAfterCommit float64
	FailAfterCommit float64
	SlowAfterCommit float64
	SlowDelay       time.Duration

	// ClockStep, ClockEvery and ClockMax walk Faults.ClockOffset: every
	// ClockEvery (on the base clock, Options.Now) the offset moves by
	// ClockStep up or down at random, never beyond ±ClockMax (at the
	// bound it moves back). Steps are taken when the clock is next read,
	// so an idle emulator catches up on them then. All three zero: no
	// walk; otherwise all must be positive and ClockMax >= ClockStep.
	ClockStep  time.Duration
	ClockEvery time.Duration
	ClockMax   time.Duration

	// Seed seeds the random source; 0 means a random seed.
	Seed uint64
}

func (r RandomFaults) validate() error {
	rates := []float64{r.Unavailable, r.RateLimited, r.DropAfterCommit, r.FailAfterCommit, r.SlowAfterCommit}
	for _, v := range rates {
		if !(v >= 0 && v <= 1) { // also refuses NaN
			return errors.New("emulator: random fault rates must be from 0 to 1")
		}
	}
	switch {
	case r.Unavailable+r.RateLimited > 1:
		return errors.New("emulator: random Unavailable + RateLimited must not exceed 1")
	case r.DropAfterCommit+r.FailAfterCommit+r.SlowAfterCommit > 1:
		return errors.New("emulator: random DropAfterCommit + FailAfterCommit + SlowAfterCommit must not exceed 1")
	case r.SlowDelay < 0:
		return errors.New("emulator: random SlowDelay must not be negative")
	case r.SlowAfterCommit > 0 && r.SlowDelay == 0:
		return errors.New("emulator: random SlowAfterCommit needs SlowDelay > 0")
	}
	walk := r.ClockStep != 0 || r.ClockEvery != 0 || r.ClockMax != 0
	if walk && (r.ClockStep <= 0 || r.ClockEvery <= 0 || r.ClockMax < r.ClockStep) {
		return errors.New("emulator: the clock walk needs ClockStep > 0, ClockEvery > 0 and ClockMax >= ClockStep")
	}
	return nil
}

// walking reports whether the clock walk is on.
func (r RandomFaults) walking() bool { return r.ClockEvery > 0 }

func newFaultRand(seed uint64) *rand.Rand {
	if seed == 0 {
		seed = rand.Uint64()
	}
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// drawBeforeWorkLocked draws Random's faults before any work: "",
// "unavailable" or "rate_limited"; e.faultMu must be held.
func (e *Emulator) drawBeforeWorkLocked() string {
	r := e.faults.Random
	if r.Unavailable == 0 && r.RateLimited == 0 {
		return ""
	}
	u := e.rng.Float64()
	switch {
	case u < r.Unavailable:
		e.injectedLocked("unavailable")
		return "unavailable"
	case u < r.Unavailable+r.RateLimited:
		e.injectedLocked("rate_limited")
		return "rate_limited"
	}
	return ""
}

// drawAfterCommitLocked draws Random's after-commit faults: "",
// "drop_after_commit", "fail_after_commit" or "slow_after_commit";
// e.faultMu must be held. The caller counts what fired.
func (e *Emulator) drawAfterCommitLocked() string {
	r := e.faults.Random
	if r.DropAfterCommit == 0 && r.FailAfterCommit == 0 && r.SlowAfterCommit == 0 {
		return ""
	}
	u := e.rng.Float64()
	switch {
	case u < r.DropAfterCommit:
		return "drop_after_commit"
	case u < r.DropAfterCommit+r.FailAfterCommit:
		return "fail_after_commit"
	case u < r.DropAfterCommit+r.FailAfterCommit+r.SlowAfterCommit:
		return "slow_after_commit"
	}
	return ""
}

// maxWalkCatchUp bounds the steps an idle emulator takes at once.
const maxWalkCatchUp = 1000

// walkClockLocked takes the clock walk's steps that are due at now (base
// clock); e.faultMu must be held. The first call after SetFaults only
// schedules the first step.
func (e *Emulator) walkClockLocked(now time.Time) {
	r := e.faults.Random
	if !r.walking() {
		return
	}
	if e.walkNext.IsZero() {
		e.walkNext = now.Add(r.ClockEvery)
		return
	}
	for n := 0; !now.Before(e.walkNext); n++ {
		if n == maxWalkCatchUp {
			e.walkNext = now.Add(r.ClockEvery)
			return
		}
		off := e.faults.ClockOffset
		step := r.ClockStep
		if e.rng.IntN(2) == 0 {
			step = -step
		}
		if off+step > r.ClockMax || off+step < -r.ClockMax {
			step = -step
		}
		if off+step <= r.ClockMax && off+step >= -r.ClockMax {
			e.faults.ClockOffset = off + step
		}
		e.injectedLocked("clock_step")
		e.walkNext = e.walkNext.Add(r.ClockEvery)
	}
}
