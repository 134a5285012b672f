package bench

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Targets the scenarios are held to (docs/benchmarks.md says why).
const (
	// MinAchievedRatio is the least share of a rate limit the limits
	// scenario must use in steady state. The limiter runs 1% under the
	// limit on purpose (ratelimit.Config.Margin), so 0.99 is the ceiling.
	MinAchievedRatio = 0.97
	// MaxMakespanRatio is the largest makespan the makespan scenario may
	// take, as a multiple of the bound the providers' limits allow.
	MaxMakespanRatio = 1.10
)

// LimitsResult is the JSON line of the limits scenario. Every number is
// counted by the simulator, not by the workers.
type LimitsResult struct {
	Scenario string `json:"scenario"`
	Workers  int    `json:"workers"`
	// LimitRPM is the provider's rate limit R, creates per minute.
	LimitRPM int `json:"limit_rpm"`
	// AchievedRatio is the accepted creates per minute from the first to
	// the last accept, divided by LimitRPM (see AchievedRatio).
	AchievedRatio float64 `json:"achieved_ratio"`
	// OverLimitWindows counts the accept times starting a 1-minute window
	// that holds more than LimitRPM accepted creates (0 required).
	OverLimitWindows int `json:"over_limit_windows"`
	// MaxInFlight is the most predictions the simulator had in flight.
	MaxInFlight int `json:"max_in_flight"`
	// ConcurrencyCap is the provider's concurrency limit C.
	ConcurrencyCap int `json:"concurrency_cap"`
	// AcceptedCreates counts the predictions the simulator accepted (and
	// would bill): one per task when nothing was paid twice.
	AcceptedCreates int `json:"accepted_creates"`
}

// Check reports the targets the result misses: AchievedRatio at least
// MinAchievedRatio, no window over the limit, MaxInFlight within the cap.
func (r LimitsResult) Check() error {
	var errs []error
	if r.AchievedRatio < MinAchievedRatio {
		errs = append(errs, fmt.Errorf("achieved_ratio %.3f is below %.2f", r.AchievedRatio, MinAchievedRatio))
	}
	if r.OverLimitWindows != 0 {
		errs = append(errs, fmt.Errorf("%d one-minute windows held more than %d creates", r.OverLimitWindows, r.LimitRPM))
	}
	if r.MaxInFlight > r.ConcurrencyCap {
		errs = append(errs, fmt.Errorf("max_in_flight %d exceeds the cap %d", r.MaxInFlight, r.ConcurrencyCap))
	}
	return errors.Join(errs...)
}

// MakespanResult is the JSON line of the makespan scenario.
type MakespanResult struct {
	Scenario string `json:"scenario"`
	Tasks    int    `json:"tasks"`
	// MakespanS is the wall time from the start of the submit to the last
	// task's terminal state, in seconds.
	MakespanS float64 `json:"makespan_s"`
	// LowerBoundS is LowerBound over the providers with requests = tasks.
	LowerBoundS float64 `json:"lower_bound_s"`
	// Ratio is MakespanS / LowerBoundS.
	Ratio float64 `json:"ratio"`
	// Succeeded counts tasks that ended succeeded.
	Succeeded int `json:"succeeded"`
}

// Check reports the targets the result misses: Ratio at most
// MaxMakespanRatio and every task succeeded.
func (r MakespanResult) Check() error {
	var errs []error
	if r.Ratio > MaxMakespanRatio {
		errs = append(errs, fmt.Errorf("makespan is %.3f× the lower bound, above %.2f×", r.Ratio, MaxMakespanRatio))
	}
	if r.Succeeded != r.Tasks {
		errs = append(errs, fmt.Errorf("%d of %d tasks succeeded", r.Succeeded, r.Tasks))
	}
	return errors.Join(errs...)
}

// OverheadResult is the JSON line of the overhead scenario.
type OverheadResult struct {
	Scenario string `json:"scenario"`
	Tasks    int    `json:"tasks"`
	// TasksPerS is the full pipeline's throughput: tasks over the time from
	// the server's start (queue full) to the last task's handler return.
	TasksPerS float64 `json:"tasks_per_s"`
	// RawAsynqTasksPerS is the same for a bare asynq no-op handler.
	RawAsynqTasksPerS float64 `json:"raw_asynq_tasks_per_s"`
	// Ratio is TasksPerS / RawAsynqTasksPerS.
	Ratio float64 `json:"ratio"`
	// P99OverheadMS is the 99th percentile of the pipeline handler's wall
	// time per task minus that of the no-op handler, in milliseconds.
	P99OverheadMS float64 `json:"p99_overhead_ms"`
	// TracedTasksPerS is TasksPerS with every task traced (bench
	// --tracing): the pipeline runs untraced, traced, traced, untraced, a
	// quarter of the tasks each, and TasksPerS counts the untraced runs.
	TracedTasksPerS float64 `json:"traced_tasks_per_s,omitempty"`
	// TracingRatio is TracedTasksPerS / TasksPerS.
	TracingRatio float64 `json:"tracing_ratio,omitempty"`
}

// MinTracingRatio is the share of the untraced throughput the pipeline must
// keep when traced: tracing costs at most 5%.
const MinTracingRatio = 0.95

// Check holds the overhead scenario to one target, and only when it was
// traced: tracing costs at most 5% of the throughput. Untraced, it measures.
func (r OverheadResult) Check() error {
	if r.TracedTasksPerS > 0 && r.TracingRatio < MinTracingRatio {
		return fmt.Errorf("tracing_ratio %.3f: traced throughput %.1f tasks/s is more than 5%% below untraced %.1f", r.TracingRatio, r.TracedTasksPerS, r.TasksPerS)
	}
	return nil
}

// AchievedRatio is the steady-state share of a rate limit a client used:
// accepted creates spread over [first, last] make accepted-1 intervals, so
// the rate is (accepted-1) / (last-first), per minute, divided by limitRPM.
// It is 0 when there is no interval to measure.
func AchievedRatio(accepted int, first, last time.Time, limitRPM int) float64 {
	span := last.Sub(first)
	if accepted < 2 || span <= 0 || limitRPM <= 0 {
		return 0
	}
	return float64(accepted-1) / span.Minutes() / float64(limitRPM)
}

// Load is the work one provider gets and the limits it allows.
type Load struct {
	// Name identifies the provider (a model ref).
	Name string
	// Requests is the number of requests the provider must serve.
	Requests int
	// RatePerMin is the provider's rate limit (0: none).
	RatePerMin int
	// Concurrency is the provider's cap on requests in flight (0: none).
	Concurrency int
	// Latency is the mean time a request holds a slot.
	Latency time.Duration
}

// Bound is the least time the provider's limits allow for Requests:
// max(Requests / rate, Requests × Latency / Concurrency). (The rate term
// rounds up by one interval: the first request needs no wait.)
func (l Load) Bound() time.Duration {
	var b time.Duration
	if l.RatePerMin > 0 {
		b = time.Duration(float64(l.Requests) / float64(l.RatePerMin) * float64(time.Minute))
	}
	if l.Concurrency > 0 {
		b = max(b, time.Duration(float64(l.Requests)*float64(l.Latency)/float64(l.Concurrency)))
	}
	return b
}

// LowerBound is the makespan the providers' limits allow: the largest
// Bound, since providers work in parallel. It returns the bound and the
// provider that sets it.
func LowerBound(loads []Load) (time.Duration, string) {
	var best time.Duration
	var name string
	for _, l := range loads {
		if b := l.Bound(); b > best {
			best, name = b, l.Name
		}
	}
	return best, name
}

// Percentile returns the q-quantile (0 < q <= 1) of ds by nearest rank:
// the smallest value with at least q of the samples at or below it. It
// returns 0 for no samples. ds is not modified.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// round3 keeps three decimals, so the JSON line stays readable.
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// ratio is a/b, 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
