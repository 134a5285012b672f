package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/runstate"
)

// progress draws a run's progress: a redrawn bar on a terminal, a line every
// few seconds otherwise (logs, CI).
type progress struct {
	w        io.Writer
	live     bool
	start    time.Time
	lastLine time.Time
	lastDone int
	// moved is when the done count last changed.
	moved     time.Time
	movedDone int
}

func newProgress(w io.Writer, live bool) *progress { return &progress{w: w, live: live} }

// line renders one status line: bar, counts, rate and ETA.
// stalled is how long no task has ended.
func progressLine(st *runstate.Status, elapsed, stalled time.Duration, width int) string {
	done := st.Done()
	frac := 0.0
	if st.Total > 0 {
		frac = float64(done) / float64(st.Total)
	}
	filled := int(frac * float64(width))
	bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(done) / s
	}
	eta := "--"
	if rate > 0 && done < st.Total {
		eta = (time.Duration(float64(st.Total-done) / rate * float64(time.Second))).Round(time.Second).String()
	} else if done >= st.Total {
		eta = "0s"
	}
	line := fmt.Sprintf("%s %d/%d done · %d failed · %d skipped · %.1f tasks/s · ETA %s · $%.2f",
		bar, done, st.Total, st.Failed, st.SkippedBudget+st.SkippedCanceled, rate, eta, st.CostUSD)
	if w := waitingOn(st, stalled); w != "" {
		line += " · waiting: " + w
	}
	return line
}

// stalledAfter is how long a run may go without a task ending before the
// progress line says what it waits on even when nothing looks wrong.
const stalledAfter = 15 * time.Second

// waitingOn says what a run that is not moving waits for: the operator, the
// fan-in, infrastructure faults being ridden out, or workers.
func waitingOn(st *runstate.Status, stalled time.Duration) string {
	var parts []string
	switch {
	case st.Paused:
		parts = append(parts, "paused (likeness resume "+st.ID+")")
	case !st.Enqueued && st.Done() < st.Total:
		parts = append(parts, "the submit is still enqueueing tasks")
	}
	if st.InfraFailing > 0 {
		parts = append(parts, fmt.Sprintf("%d task(s) retrying after infrastructure faults (%s)", st.InfraFailing, trimMsg(st.InfraErr)))
	}
	if st.Complete() && st.Finalized == 0 {
		if st.FinalizeErr != "" {
			parts = append(parts, "the fan-in, retrying after: "+trimMsg(st.FinalizeErr))
		} else {
			parts = append(parts, "the fan-in (manifest, summary, report)")
		}
	}
	if len(parts) == 0 && stalled >= stalledAfter && !st.Complete() {
		msg := fmt.Sprintf("no task ended for %s", stalled.Round(time.Second))
		if st.PendingRequests > 0 {
			msg += fmt.Sprintf("; %d provider request(s) in progress", st.PendingRequests)
		} else {
			msg += "; is a worker running for this run's providers?"
		}
		parts = append(parts, msg)
	}
	return strings.Join(parts, "; ")
}

func trimMsg(s string) string {
	if len(s) > 120 {
		return s[:117] + "..."
	}
	return s
}

func (p *progress) update(st *runstate.Status, now time.Time) {
	if p.start.IsZero() {
		p.start, p.moved = now, now
	}
	if d := st.Done(); d != p.movedDone {
		p.moved, p.movedDone = now, d
	}
	elapsed, stalled := now.Sub(p.start), now.Sub(p.moved)
	if p.live {
		fmt.Fprintf(p.w, "\r\033[K%s", progressLine(st, elapsed, stalled, 30))
		return
	}
	if now.Sub(p.lastLine) >= 5*time.Second || (st.Done() != p.lastDone && st.Done() == st.Total) {
		fmt.Fprintln(p.w, progressLine(st, elapsed, stalled, 20))
		p.lastLine, p.lastDone = now, st.Done()
	}
}

func (p *progress) finish(st *runstate.Status, now time.Time) {
	if p.live {
		p.update(st, now)
		fmt.Fprintln(p.w)
	}
}
