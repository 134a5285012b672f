package bench

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// MaxPaidPerTask is the most paid predictions per task the chaos scenario
// allows: the failure mix alone forces 1/((1-moderation)(1-blank)) = 1.031
// (moderated and blank predictions are paid and run again); the rest of
// the 4% is for a fault that costs a prediction now and then. A worker
// that pays again for a prediction it lost to a crash instead of resuming
// it exceeds it quickly.
const MaxPaidPerTask = 1.04

// ChaosMakespanSlack is the makespan the chaos scenario allows beyond
// bound_s + outage_s (times Config.TimeScale): time to notice a fault has
// ended, reconnect, and redeliver the tasks of killed workers.
const ChaosMakespanSlack = 30 * time.Second

// ChaosResult is the JSON line of the chaos scenario. The counts come from
// the run's counters in Redis (succeeded, failed), the bucket (records,
// outputs, manifest) and the simulator (paid predictions), never from the
// workers' own reports.
type ChaosResult struct {
	Scenario string `json:"scenario"`
	// Tasks is the run's task count.
	Tasks int `json:"tasks"`
	// Succeeded and Failed are the run's terminal counters (what `likeness
	// status` shows).
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	// UniqueRecords counts the distinct tasks with a record in the bucket
	// (runs/<run>/records/).
	UniqueRecords int `json:"unique_records"`
	// DuplicateRecords counts a task counted or recorded more than once:
	// records naming a task another record already names, manifest lines
	// repeating a task, and terminal counts beyond the run's task count.
	DuplicateRecords int `json:"duplicate_records"`
	// MissingOutputs counts succeeded records whose output object is
	// absent or does not decode as an image, plus tasks counted succeeded
	// without any succeeded record.
	MissingOutputs int `json:"missing_outputs"`
	// PaidPredictionsPerTask is the predictions the simulator created
	// (accepted and started: what a provider bills, whatever their end)
	// divided by Tasks. A create refused with 429 or 503, or during the
	// outage, is not paid.
	PaidPredictionsPerTask float64 `json:"paid_predictions_per_task"`
	// MakespanS is the wall time from the start of the submit until the
	// run's counters showed every task terminal (or the wait gave up).
	MakespanS float64 `json:"makespan_s"`
	// BoundS is the least time the limits allow (ChaosBound).
	BoundS float64 `json:"bound_s"`
	// OutageS is how long the faults took a part away: the union of the
	// measured intervals Redis was down (SIGKILL until it answered PING
	// again, its AOF loaded), MinIO was down (stop until ready again) and
	// the provider answered 503 to everything, within the run.
	OutageS float64 `json:"outage_s"`
	// WorkerKills counts the workers SIGKILLed (each replaced at once).
	WorkerKills int `json:"worker_kills"`
	// SlackS is the makespan allowed beyond BoundS + OutageS (not printed;
	// ChaosMakespanSlack × TimeScale, default 30).
	SlackS float64 `json:"-"`
}

// Check reports the targets the result misses: every task succeeded, no
// duplicate, no missing output, at most MaxPaidPerTask paid predictions
// per task, and makespan_s at most bound_s + outage_s + 30 s.
func (r ChaosResult) Check() error {
	var errs []error
	if r.Succeeded != r.Tasks {
		errs = append(errs, fmt.Errorf("%d of %d tasks succeeded (%d failed)", r.Succeeded, r.Tasks, r.Failed))
	}
	if r.DuplicateRecords != 0 {
		errs = append(errs, fmt.Errorf("%d tasks counted or recorded twice", r.DuplicateRecords))
	}
	if r.MissingOutputs != 0 {
		errs = append(errs, fmt.Errorf("%d succeeded tasks have no readable output in the bucket", r.MissingOutputs))
	}
	if r.PaidPredictionsPerTask > MaxPaidPerTask {
		errs = append(errs, fmt.Errorf("%.3f paid predictions per task, above %.2f", r.PaidPredictionsPerTask, MaxPaidPerTask))
	}
	slack := r.SlackS
	if slack == 0 {
		slack = ChaosMakespanSlack.Seconds()
	}
	if limit := r.BoundS + r.OutageS + slack; r.MakespanS > limit {
		errs = append(errs, fmt.Errorf("makespan %.1fs is above bound %.1fs + outage %.1fs + %.0fs = %.1fs",
			r.MakespanS, r.BoundS, r.OutageS, slack, limit))
	}
	return errors.Join(errs...)
}

// FailureMix is how often a provider fails a create or a prediction, as
// the simulator draws it: first a random 429 (Throttle), then, of the
// creates let through, a 503 (ServerError); of the predictions created,
// Moderation end "failed" by moderation and, of the rest, Blank succeed
// with an all-black image. The worker retries each (a 429 after its
// retry_after, a 503 with the same seed, a moderated or blank image with
// a new seed).
type FailureMix struct {
	Throttle, ServerError, Moderation, Blank float64
}

// CreatesPerTask is the expected create requests per task: one per try,
// and a try succeeds with probability (1-Throttle)(1-ServerError)
// (1-Moderation)(1-Blank). Every one of them spends a token of the fleet's
// rate limit.
func (m FailureMix) CreatesPerTask() float64 {
	return 1 / ((1 - m.Throttle) * (1 - m.ServerError) * (1 - m.Moderation) * (1 - m.Blank))
}

// PaidPerTask is the expected paid predictions per task: every prediction
// created is paid, and a task needs another after a moderated or blank one.
func (m FailureMix) PaidPerTask() float64 { return 1 / ((1 - m.Moderation) * (1 - m.Blank)) }

// ChaosBound is the least time the limits allow for tasks under the
// failure mix: the expected creates (tasks × mix.CreatesPerTask()) at
// ratePerMin, plus one image latency for the last prediction to finish.
// The concurrency cap is checked too, for completeness: paid predictions ×
// latency / cap, plus one latency for the first to start, whichever is
// longer. With 1,000 tasks, 600/min, 40 in flight, 2.5 s and 3% 429, 5%
// 503, 1% moderated, 2% blank: 1,118.5 creates in 111.85 s, + 2.5 s =
// 114.35 s (the cap allows 1,030.7 × 2.5 / 40 = 64.4 s).
func ChaosBound(tasks, ratePerMin, concurrency int, latency time.Duration, mix FailureMix) time.Duration {
	creates := float64(tasks) * mix.CreatesPerTask()
	rate := time.Duration(creates / float64(ratePerMin) * float64(time.Minute))
	b := rate
	if concurrency > 0 {
		paid := float64(tasks) * mix.PaidPerTask()
		b = max(b, time.Duration(paid*float64(latency)/float64(concurrency)))
	}
	return b + latency
}

// span is an interval of time during which something was down.
type span struct {
	what     string
	from, to time.Time
}

// unionWithin is the total length of the union of spans, each clipped to
// [lo, hi]: overlapping faults count once.
func unionWithin(spans []span, lo, hi time.Time) time.Duration {
	var cl []span
	for _, s := range spans {
		from, to := s.from, s.to
		if from.Before(lo) {
			from = lo
		}
		if to.After(hi) {
			to = hi
		}
		if to.After(from) {
			cl = append(cl, span{s.what, from, to})
		}
	}
	sort.Slice(cl, func(i, j int) bool { return cl[i].from.Before(cl[j].from) })
	var total time.Duration
	var cur *span
	for i := range cl {
		s := cl[i]
		switch {
		case cur == nil:
			cur = &s
		case !s.from.After(cur.to):
			if s.to.After(cur.to) {
				cur.to = s.to
			}
		default:
			total += cur.to.Sub(cur.from)
			cur = &s
		}
	}
	if cur != nil {
		total += cur.to.Sub(cur.from)
	}
	return total
}
