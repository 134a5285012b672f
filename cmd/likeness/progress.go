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
}

func newProgress(w io.Writer, live bool) *progress { return &progress{w: w, live: live} }

// line renders one status line: bar, counts, rate and ETA.
func progressLine(st *runstate.Status, elapsed time.Duration, width int) string {
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
	return fmt.Sprintf("%s %d/%d done · %d failed · %d skipped · %.1f tasks/s · ETA %s · $%.2f",
		bar, done, st.Total, st.Failed, st.SkippedBudget+st.SkippedCanceled, rate, eta, st.CostUSD)
}

func (p *progress) update(st *runstate.Status, now time.Time) {
	if p.start.IsZero() {
		p.start = now
	}
	elapsed := now.Sub(p.start)
	if p.live {
		fmt.Fprintf(p.w, "\r\033[K%s", progressLine(st, elapsed, 30))
		return
	}
	if now.Sub(p.lastLine) >= 5*time.Second || (st.Done() != p.lastDone && st.Done() == st.Total) {
		fmt.Fprintln(p.w, progressLine(st, elapsed, 20))
		p.lastLine, p.lastDone = now, st.Done()
	}
}

func (p *progress) finish(st *runstate.Status, now time.Time) {
	if p.live {
		p.update(st, now)
		fmt.Fprintln(p.w)
	}
}
