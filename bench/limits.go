package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/task"
)

// The limits scenario: one provider limited to limitsRPM creates a minute
// and limitsCap in flight, worked by limitsWorkers worker processes with
// more slots than the cap. The simulator enforces nothing: it counts, so a
// limiter that overshoots shows up in the numbers instead of as 429s.
const (
	limitsRPM     = 600
	limitsCap     = 8
	limitsWorkers = 4
	limitsTasks   = 1200 // two minutes at the limit
	// limitsLatency keeps the cap in play (about 5 in flight at the limit,
	// more with jitter) without making it the binding limit.
	limitsLatency = 500 * time.Millisecond
	limitsModel   = "black-forest-labs/flux-kontext-pro"
	// workerSlots is the tasks each worker process works at once per
	// provider queue: more than any cap, so the fleet limits decide.
	limitsWorkerSlots = 8
)

// benchToken is the fake Replicate token the simulator and workers share.
const benchToken = "r8_likeness_bench_not_a_real_token"

func runLimits(ctx context.Context, e *env) (Result, error) {
	res, _, err := limits(ctx, e, nil)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// limits runs the limits scenario. midway, when set, is called once, from
// the progress report, once half the tasks are done (the sentinel scenario
// fails Redis over there); its error ends the scenario. It also returns the
// run's final status.
func limits(ctx context.Context, e *env, midway func(context.Context) error) (LimitsResult, *runstate.Status, error) {
	var (
		midErr   error
		midFired bool
	)
	workers := pick(e.cfg.Workers, limitsWorkers)
	f := fanOutFor("bench-limits", pick(e.cfg.Tasks, limitsTasks), 4,
		[]specModel{{id: "kontext", ref: "replicate:" + limitsModel}})
	e.progressf("%d workers, %d tasks on replicate:%s, limit %d/min and %d in flight, latency %s",
		workers, f.tasks(), limitsModel, limitsRPM, limitsCap, limitsLatency)

	base, err := e.startSim(ctx, fmt.Appendf(nil, `models:
  %s:
    latency: %s
    latency_jitter: 0.3
`, limitsModel, limitsLatency), benchToken, 1)
	if err != nil {
		return LimitsResult{}, nil, err
	}
	limitsFile, err := e.writeFile("limits.yaml", fmt.Appendf(nil,
		"limits:\n  replicate: {requests_per_minute: %d, concurrency: %d}\n", limitsRPM, limitsCap))
	if err != nil {
		return LimitsResult{}, nil, err
	}
	procs, err := e.startWorkers(ctx, workers, limitsWorkerSlots, e.subprocessEnv(
		"REPLICATE_API_TOKEN="+benchToken, "LIKENESS_REPLICATE_BASE_URL="+base+"/v1", "LIKENESS_LIMITS="+limitsFile,
	), task.QueueFor("replicate"))
	if err != nil {
		return LimitsResult{}, nil, err
	}

	s, err := e.loadSpec(f)
	if err != nil {
		return LimitsResult{}, nil, err
	}
	start := time.Now()
	sub, err := e.submit(ctx, s)
	if err != nil {
		return LimitsResult{}, nil, err
	}
	e.progressf("submitted run %s (%d tasks) in %s", sub.RunID, sub.Tasks, since(start))
	st, _, err := e.waitRun(ctx, sub.RunID, 250*time.Millisecond, func() error { return anyExited(procs) },
		func(st *runstate.Status) {
			line := fmt.Sprintf("%d/%d done after %s", st.Done(), st.Total, since(start))
			if ss, err := fetchStats(ctx, base, time.Minute, limitsRPM); err == nil {
				line += fmt.Sprintf("; sim: %d accepted, %d in flight (max %d), %d throttled",
					ss.Creates-ss.Throttled, ss.InFlight, ss.MaxInFlight, ss.Throttled)
			}
			e.progressf("%s", line)
			if midway != nil && !midFired && st.Done() >= st.Total/2 {
				midFired = true
				midErr = midway(ctx)
			}
		})
	if err == nil {
		err = midErr
	}
	if err == nil && midway != nil && !midFired {
		err = errors.New("the run ended before half its tasks were reported done: nothing happened midway; raise Tasks")
	}
	if err != nil {
		return LimitsResult{}, st, err
	}
	e.progressf("run done in %s: %d succeeded, %d failed", since(start), st.Succeeded, st.Failed)

	ss, err := fetchStats(ctx, base, time.Minute, limitsRPM)
	if err != nil {
		return LimitsResult{}, nil, err
	}
	m := ss.Models[limitsModel]
	if m.FirstAccept == nil || m.OverLimit == nil {
		return LimitsResult{}, st, fmt.Errorf("the simulator saw no accepted create of %s", limitsModel)
	}
	if m.AcceptLog != int(m.Accepted) {
		return LimitsResult{}, st, fmt.Errorf("the simulator kept %d of %d accept times; lower Tasks", m.AcceptLog, m.Accepted)
	}
	span := m.LastAccept.Sub(*m.FirstAccept)
	res := LimitsResult{
		Scenario: ScenarioLimits, Workers: workers, LimitRPM: limitsRPM,
		AchievedRatio:    round3(AchievedRatio(int(m.Accepted), *m.FirstAccept, *m.LastAccept, limitsRPM)),
		OverLimitWindows: m.OverLimit.Windows, MaxInFlight: m.MaxInFlight, ConcurrencyCap: limitsCap,
		AcceptedCreates: int(m.Accepted),
	}
	e.progressf("sim: %d creates accepted over %s (%.1f/min), busiest minute %d, max in flight %d, %d throttled, %d failed tasks",
		m.Accepted, span.Round(time.Millisecond), float64(m.Accepted-1)/span.Minutes(), m.MaxInWindow["1m0s"], m.MaxInFlight, m.Throttled, st.Failed)
	if st.Failed > 0 {
		e.progressf("warning: %d tasks failed; see the worker logs in %s", st.Failed, e.dir)
	}
	return res, st, nil
}

// pick returns v, or def when v is 0.
func pick(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// fanOutFor is a spec fan-out of at least tasks tasks over models, with
// the given number of characters: up to 100 prompts, then more variants.
// Prompts come before variants because a spec expands models inside
// prompts and variants inside models: with one variant, the queue
// alternates between the models; with many, it holds runs of one model's
// tasks (docs/benchmarks.md measures what that costs).
func fanOutFor(name string, tasks, characters int, models []specModel) fanOut {
	per := int(math.Ceil(float64(tasks) / float64(len(models))))
	prompts := min(100, max(1, int(math.Ceil(float64(per)/float64(characters)))))
	variants := max(1, int(math.Ceil(float64(per)/float64(characters*prompts))))
	return fanOut{name: name, characters: characters, prompts: prompts, variants: variants, models: models}
}
