package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// report is the verdict of one run.
type report struct {
	o   options
	res *results

	purchases, twins, ownKey, impatient, attempts int
	wanted, held                                  int
	duplicates, lost, wrong, unanswered           int
	problems                                      []string // one line per purchase that went wrong
}

// maxProblems bounds the purchases listed in a report.
const maxProblems = 30

// report judges every purchase against the orders the emulator holds.
func (s *soak) report(res *results) *report {
	return judge(s.o, res)
}

// judge counts, per purchase, the orders held against those wanted, and
// checks every caller's final answer.
func judge(o options, res *results) *report {
	r := &report{o: o, res: res}
	labels := map[string]bool{}
	for _, p := range res.purchases {
		labels[p.label] = true
		r.purchases++
		if p.twins {
			r.twins++
		}
		if p.ownKey != "" {
			r.ownKey++
		}
		ids := res.orders[p.label]
		r.wanted += p.wanted()
		r.held += len(ids)
		var why []string
		if n := len(ids) - p.wanted(); n > 0 {
			r.duplicates += n
			why = append(why, fmt.Sprintf("%d orders, %d wanted", len(ids), p.wanted()))
		} else if n < 0 {
			r.lost -= n
			why = append(why, fmt.Sprintf("%d orders, %d wanted", len(ids), p.wanted()))
		}
		seen := map[int64]bool{}
		for i, c := range p.callers {
			if !c.patient {
				r.impatient++
			}
			r.attempts += len(c.attempts)
			switch a := c.final; {
			case a == nil:
				r.unanswered++
				why = append(why, fmt.Sprintf("caller %d: no final answer", i))
			case a.status != 201:
				r.wrong++
				why = append(why, fmt.Sprintf("caller %d: final answer %d %s", i, a.status, a.body))
			case a.label != p.label || !slices.Contains(ids, a.orderID):
				r.wrong++
				why = append(why, fmt.Sprintf("caller %d: 201 for order %d labelled %q, not one of this purchase's %v", i, a.orderID, a.label, ids))
			case seen[a.orderID]:
				r.wrong++
				why = append(why, fmt.Sprintf("caller %d: 201 for order %d, which the other twin got too", i, a.orderID))
			default:
				seen[a.orderID] = true
			}
		}
		if len(why) > 0 {
			r.problems = append(r.problems, describe(p)+": "+strings.Join(why, "; "))
		}
	}
	for label, ids := range res.orders {
		if !labels[label] {
			r.duplicates += len(ids)
			r.problems = append(r.problems, fmt.Sprintf("orders %v with label %q belong to no purchase of this run", ids, label))
		}
	}
	return r
}

// describe names a purchase and how its callers fared, attempt by attempt.
func describe(p *purchase) string {
	key := "automatic key"
	if p.ownKey != "" {
		key = "own key " + p.ownKey
	}
	if p.twins {
		key = "twins, automatic keys"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s)", p.label, key)
	for i, c := range p.callers {
		kind := "impatient"
		if c.patient {
			kind = "patient"
		}
		fmt.Fprintf(&b, " [caller %d, %s %v:", i, kind, c.timeout.Round(100*time.Millisecond))
		for _, a := range c.attempts {
			st := "no answer"
			if a.status != 0 {
				st = fmt.Sprint(a.status)
			}
			if a.note != "" && a.status != 0 {
				st += " " + a.note
			}
			fmt.Fprintf(&b, " r%d %s %v,", a.replica, st, a.took.Round(10*time.Millisecond))
		}
		b.WriteString("]")
	}
	return b.String()
}

// failure returns an error naming what went wrong, or nil for a clean run.
func (r *report) failure() error {
	var errs []error
	if r.duplicates+r.lost+r.wrong+r.unanswered > 0 {
		errs = append(errs, fmt.Errorf("%d duplicate orders, %d lost, %d wrong answers, %d unanswered callers",
			r.duplicates, r.lost, r.wrong, r.unanswered))
	}
	errs = append(errs, r.res.dead...)
	if r.purchases == 0 {
		errs = append(errs, errors.New("no purchase was started"))
	}
	return errors.Join(errs...)
}

// print writes the report: the setup, the counts, the faults, the
// resources over time, the purchases that went wrong and the verdict.
func (r *report) print(w io.Writer) {
	o, res := r.o, r.res
	fmt.Fprintf(w, "soak: %v of purchases at %g/s, -in-progress %s, -seed %d, -fault-rate %g, KH_UPSTREAM_TIMEOUT %v, slow answers after %v, clock walk ±200 s every %v up to ±400 s\n",
		o.duration(), o.rate, o.inProgress, o.seed, o.faultRate, o.upstreamTimeout, o.slowDelay(), o.clockEvery())
	for _, e := range res.events {
		fmt.Fprintf(w, "soak: %s\n", e)
	}
	fmt.Fprintf(w, "soak: %d purchases (%d own key, %d automatic key, %d twin pairs), %d impatient callers, %d attempts, %v in all\n",
		r.purchases, r.ownKey, r.purchases-r.ownKey-r.twins, r.twins, r.impatient, r.attempts, res.elapsed.Round(time.Second))
	var inj []string
	for _, k := range slices.Sorted(maps.Keys(res.injected)) {
		inj = append(inj, fmt.Sprintf("%s %d", k, res.injected[k]))
	}
	fmt.Fprintf(w, "soak: faults injected by the emulator: %s\n", strings.Join(inj, ", "))
	fmt.Fprintf(w, "soak: resources per replica (RSS MiB / open fds):\n")
	for _, s := range res.samples {
		fmt.Fprintf(w, "soak:   %8v  replica 0 %6s / %3d   replica 1 %6s / %3d%s\n", s.at.Round(time.Second),
			mib(s.rss[0]), s.fds[0], mib(s.rss[1]), s.fds[1], sampleErr(s))
	}
	for i, p := range r.problems {
		if i == maxProblems {
			fmt.Fprintf(w, "soak: ... and %d more\n", len(r.problems)-maxProblems)
			break
		}
		fmt.Fprintf(w, "soak: WRONG %s\n", p)
	}
	for _, err := range res.dead {
		fmt.Fprintf(w, "soak: DIED %v\n", err)
	}
	fmt.Fprintf(w, "soak: orders wanted %d, held %d\n", r.wanted, r.held)
	verdict := "PASS"
	if r.failure() != nil {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "soak: %s: duplicates %d, lost %d, wrong answers %d, unanswered %d\n",
		verdict, r.duplicates, r.lost, r.wrong, r.unanswered)
}

func sampleErr(s sample) string {
	if err := errors.Join(s.errors[0], s.errors[1]); err != nil {
		return "  (" + err.Error() + ")"
	}
	return ""
}
