package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/task"
)

// simProvider is one simulated provider of the makespan scenario: a
// Replicate model with limits of its own, mirrored in the workers' limits
// file under the model's ref.
type simProvider struct {
	id          string // spec model id
	model       string // owner/name, a Replicate model in the registry
	ratePerMin  int
	concurrency int
	latency     time.Duration
}

// Failure mix every makespan provider shows.
const (
	makespanServerErrors = 0.05 // creates answered 503
	makespanThrottles    = 0.03 // creates answered 429, retry_after 1
	makespanBlanks       = 0.02 // predictions with an all-black output
	makespanJitter       = 0.2  // latency spread, ±20%
	makespanWorkers      = 4
	makespanTasks        = 2000
	// makespanWorkerSlots is each worker's task slots for the replicate
	// queue that all four providers share: more than the caps add up to,
	// so tasks waiting for one provider's limit do not starve the others.
	makespanWorkerSlots = 32
)

// makespanProviders differ in what binds them: flux-kontext-pro by its
// concurrency (the bound of the run), seededit by its rate, ideogram and
// kontext-dev by both at once, with slack. docs/benchmarks.md explains
// why rate-bound providers get slack: every 429 pauses a provider's whole
// fleet for its retry_after.
var makespanProviders = []simProvider{
	{id: "kontext-pro", model: "black-forest-labs/flux-kontext-pro", ratePerMin: 600, concurrency: 16, latency: 3 * time.Second},
	{id: "seededit", model: "bytedance/seededit-3.0", ratePerMin: 600, concurrency: 24, latency: 2 * time.Second},
	{id: "ideogram", model: "ideogram-ai/ideogram-character", ratePerMin: 540, concurrency: 32, latency: 4 * time.Second},
	{id: "kontext-dev", model: "black-forest-labs/flux-kontext-dev", ratePerMin: 540, concurrency: 12, latency: 1500 * time.Millisecond},
}

func runMakespan(ctx context.Context, e *env) (Result, error) {
	workers := pick(e.cfg.Workers, makespanWorkers)
	models := make([]specModel, len(makespanProviders))
	var simCfg, limits strings.Builder
	simCfg.WriteString("models:\n")
	limits.WriteString("limits:\n")
	for i, p := range makespanProviders {
		models[i] = specModel{id: p.id, ref: "replicate:" + p.model}
		fmt.Fprintf(&simCfg, "  %s:\n    latency: %s\n    latency_jitter: %g\n    server_error_rate: %g\n    throttle_rate: %g\n    blank_rate: %g\n    rate_limit: %d\n    concurrency: %d\n",
			p.model, p.latency, makespanJitter, makespanServerErrors, makespanThrottles, makespanBlanks, p.ratePerMin, p.concurrency)
		fmt.Fprintf(&limits, "  %q: {requests_per_minute: %d, concurrency: %d}\n", "replicate:"+p.model, p.ratePerMin, p.concurrency)
	}
	f := fanOutFor("bench-makespan", pick(e.cfg.Tasks, makespanTasks), 5, models)
	perProvider := f.tasks() / len(models)
	loads := make([]Load, len(makespanProviders))
	for i, p := range makespanProviders {
		loads[i] = Load{Name: "replicate:" + p.model, Requests: perProvider, RatePerMin: p.ratePerMin, Concurrency: p.concurrency, Latency: p.latency}
		e.progressf("provider %s: %d tasks, %d/min, %d in flight, latency %s ±%.0f%%: bound %.1fs",
			loads[i].Name, perProvider, p.ratePerMin, p.concurrency, p.latency, makespanJitter*100, loads[i].Bound().Seconds())
	}
	bound, by := LowerBound(loads)
	e.progressf("%d workers, %d tasks; lower bound %.1fs (set by %s); failures: %.0f%% 5xx, %.0f%% 429, %.0f%% blank",
		workers, f.tasks(), bound.Seconds(), by, makespanServerErrors*100, makespanThrottles*100, makespanBlanks*100)

	base, err := e.startSim(ctx, []byte(simCfg.String()), benchToken, 2)
	if err != nil {
		return nil, err
	}
	limitsFile, err := e.writeFile("limits.yaml", []byte(limits.String()))
	if err != nil {
		return nil, err
	}
	procs, err := e.startWorkers(ctx, workers, makespanWorkerSlots, e.subprocessEnv(
		"REPLICATE_API_TOKEN="+benchToken, "LIKENESS_REPLICATE_BASE_URL="+base+"/v1", "LIKENESS_LIMITS="+limitsFile,
	), task.QueueFor("replicate"))
	if err != nil {
		return nil, err
	}
	s, err := e.loadSpec(f)
	if err != nil {
		return nil, err
	}

	start := time.Now()
	sub, err := e.submit(ctx, s)
	if err != nil {
		return nil, err
	}
	e.progressf("submitted run %s (%d tasks) in %s", sub.RunID, sub.Tasks, since(start))
	st, end, err := e.waitRun(ctx, sub.RunID, 100*time.Millisecond, func() error { return anyExited(procs) },
		func(st *runstate.Status) {
			line := fmt.Sprintf("%d/%d done after %s", st.Done(), st.Total, since(start))
			if ss, err := fetchStats(ctx, base, time.Minute, 0); err == nil {
				for _, p := range makespanProviders {
					m := ss.Models[p.model]
					line += fmt.Sprintf("; %s %d created, %d in flight", p.id, m.Created, m.InFlight)
				}
			}
			e.progressf("%s", line)
		})
	if err != nil {
		return nil, err
	}
	makespan := end.Sub(start)
	e.progressf("run done in %s: %d succeeded, %d failed", makespan.Round(time.Millisecond), st.Succeeded, st.Failed)

	ss, err := fetchStats(ctx, base, time.Minute, 0)
	if err != nil {
		return nil, err
	}
	var actualBound time.Duration
	var actualBy string
	var limit429s int64
	for i, p := range makespanProviders {
		m := ss.Models[p.model]
		// The bound for the requests the simulator accepted: the rate
		// counts every accepted create, the concurrency only those that ran
		// a prediction (a 503 holds no slot for the latency).
		rate := Load{Requests: int(m.Accepted), RatePerMin: p.ratePerMin}
		conc := Load{Requests: int(m.Created), Concurrency: p.concurrency, Latency: p.latency}
		b := max(rate.Bound(), conc.Bound())
		if b > actualBound {
			actualBound, actualBy = b, loads[i].Name
		}
		limit429s += m.limitThrottles()
		last := time.Duration(0)
		if m.LastAccept != nil {
			last = m.LastAccept.Sub(start)
		}
		e.progressf("provider %s: %d creates accepted (%d answered 503), %d predictions, %d random 429s, %d limit 429s, max %d in flight; last create at %.1fs; bound %.1fs for %d tasks, %.1fs for the requests made",
			loads[i].Name, m.Accepted, m.ServerErrors, m.Created, m.ThrottledRandom, m.limitThrottles(), m.MaxInFlight,
			last.Seconds(), loads[i].Bound().Seconds(), perProvider, b.Seconds())
	}
	e.progressf("makespan %.1fs; lower bound %.1fs for the tasks (ratio %.3f), %.1fs for the requests the simulator accepted (set by %s, ratio %.3f)",
		makespan.Seconds(), bound.Seconds(), ratio(makespan.Seconds(), bound.Seconds()),
		actualBound.Seconds(), actualBy, ratio(makespan.Seconds(), actualBound.Seconds()))
	if limit429s > 0 {
		e.progressf("FAILURE OF THE FLEET LIMITER: the simulator answered %d creates 429 for exceeding a provider's limit", limit429s)
	}
	if st.Failed > 0 {
		e.progressf("warning: %d tasks failed; see the worker logs in %s", st.Failed, e.dir)
	}
	return MakespanResult{
		Scenario: ScenarioMakespan, Tasks: st.Total, MakespanS: round3(makespan.Seconds()),
		LowerBoundS: round3(bound.Seconds()), Ratio: round3(ratio(makespan.Seconds(), bound.Seconds())), Succeeded: st.Succeeded,
	}, nil
}
