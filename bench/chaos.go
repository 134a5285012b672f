package bench

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/likeness-run/likeness/pkg/task"
)

// The chaos scenario (issue 9): a run of chaosTasks tasks over five
// Replicate models of the simulator, limited to 600 creates a minute and
// 40 in flight, failing like a provider (3% random 429, 5% 503, 1%
// moderated, 2% blank), worked by three `likeness worker` processes while
// the infrastructure fails under it on a fixed schedule (chaosScheduleFor):
//
//   - every 9 s a worker is SIGKILLed and a new one started in its place;
//   - at 20 s Redis is SIGKILLed and 3 s later started again on the same
//     port and append-only file (appendfsync everysec), so the queue and
//     the run's counters survive, less at most the last second of writes;
//   - at 45 s MinIO is stopped and 20 s later started again on the same
//     port and data directory;
//   - from 75 s to 105 s the provider answers every request 503.
//
// Redis and MinIO are the scenario's own processes, not Config.RedisURL
// and Config.S3. It then audits the bucket and the simulator's counts (see
// ChaosResult). What is deterministic: the schedule, the order of the
// kills (round robin), the spec (fixed seed) and the simulator's draws for
// a given order of creates (fixed seed); the order in which the workers'
// creates reach the simulator is not.
const (
	chaosTasks   = 1000
	chaosWorkers = 3
	chaosRPM     = 600
	chaosCap     = 40
	chaosLatency = 2500 * time.Millisecond
	chaosJitter  = 0.2
	// chaosWorkerSlots is each worker's task slots. At the rate limit
	// 10 creates/s × 2.5 s keep 25 predictions in flight: two workers (one
	// being replaced) still have 32 slots, so the limits decide. More would
	// only hold more tasks waiting for the limiter, each stranded by a
	// SIGKILL until asynq's lease on it expires.
	chaosWorkerSlots = 16
	chaosSimSeed     = 9
	chaosSpecSeed    = 20260309
)

// chaosMix is the failure mix of every chaos model.
var chaosMix = FailureMix{Throttle: 0.03, ServerError: 0.05, Moderation: 0.01, Blank: 0.02}

// chaosModels are the five Replicate models the run spreads over.
var chaosModels = []specModel{
	{id: "kontext-pro", ref: "replicate:black-forest-labs/flux-kontext-pro"},
	{id: "kontext-max", ref: "replicate:black-forest-labs/flux-kontext-max"},
	{id: "kontext-dev", ref: "replicate:black-forest-labs/flux-kontext-dev"},
	{id: "ideogram", ref: "replicate:ideogram-ai/ideogram-character"},
	{id: "seededit", ref: "replicate:bytedance/seededit-3.0"},
}

// chaosOutputRetries is the chaos spec's output_retries (see runChaos).
const chaosOutputRetries = 4

func runChaos(ctx context.Context, cfg Config) (_ Result, err error) {
	e, err := newEnv(cfg, ScenarioChaos)
	if err != nil {
		return nil, err
	}
	// Stopped in this order however the scenario ends: the fault and
	// churn goroutines (which start processes), then every process.
	var wg sync.WaitGroup
	faultCtx, stopFaults := context.WithCancel(ctx)
	defer func() {
		stopFaults()
		wg.Wait()
		e.close(err == nil)
	}()

	scale := cfg.TimeScale
	sched := chaosScheduleFor(scale)
	latency := time.Duration(float64(chaosLatency) * scale)
	workers := pick(cfg.Workers, chaosWorkers)
	f := fanOutFor("bench-chaos", pick(cfg.Tasks, chaosTasks), 5, chaosModels)
	f.seed = chaosSpecSeed
	// With 3% of outputs bad (2% blank, 1% moderated), the default two
	// output retries fail a task once in about 37 runs of 1,000
	// (0.03³ × 1,000): the model's doing, not the fleet's. A dataset run
	// allows more; four make it once in 40,000 runs.
	f.outputRetries = chaosOutputRetries
	bound := ChaosBound(f.tasks(), chaosRPM, chaosCap, latency, chaosMix)
	slack := time.Duration(float64(ChaosMakespanSlack) * scale)
	target := bound + sched.nominalOutage() + slack
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 2*target + time.Minute
	}
	e.progressf("%d tasks over %d models, %d/min and %d in flight, latency %s; %.0f%% 429, %.0f%% 503, %.0f%% moderated, %.0f%% blank: %.2f creates and %.3f paid predictions per task expected; bound %.1fs",
		f.tasks(), len(chaosModels), chaosRPM, chaosCap, latency, chaosMix.Throttle*100, chaosMix.ServerError*100,
		chaosMix.Moderation*100, chaosMix.Blank*100, chaosMix.CreatesPerTask(), chaosMix.PaidPerTask(), bound.Seconds())
	e.progressf("faults: a worker SIGKILLed every %s; redis killed at %s for %s; minio stopped at %s for %s; provider down at %s for %s; target makespan %.1fs, giving up after %s",
		sched.killEvery, sched.redisKill, sched.redisDown, sched.minioStop, sched.minioDown, sched.outageStart, sched.outageSpan, target.Seconds(), timeout)

	// The scenario's own Redis and MinIO.
	rds, err := e.newChaosRedis()
	if err != nil {
		return nil, err
	}
	mio, err := e.newChaosMinIO()
	if err != nil {
		return nil, err
	}
	started := time.Now()
	if err := rds.start(ctx, 30*time.Second); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	if err := mio.start(ctx, 60*time.Second); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInfra, err)
	}
	e.progressf("own redis on %s (appendonly, everysec) and minio on %s up in %s", rds.addr, mio.addr, since(started))
	e.cfg.RedisURL = "redis://" + rds.addr + "/0"
	e.cfg.S3 = S3Config{Endpoint: mio.addr, AccessKey: chaosS3AccessKey, SecretKey: chaosS3SecretKey, Bucket: cfg.S3.Bucket}
	if err := e.connect(ctx, 0); err != nil {
		return nil, err
	}

	var simCfg strings.Builder
	simCfg.WriteString("models:\n")
	for _, m := range chaosModels {
		fmt.Fprintf(&simCfg, "  %s:\n    latency: %s\n    latency_jitter: %g\n    throttle_rate: %g\n    server_error_rate: %g\n    moderation_rate: %g\n    blank_rate: %g\n",
			strings.TrimPrefix(m.ref, "replicate:"), latency, chaosJitter, chaosMix.Throttle, chaosMix.ServerError, chaosMix.Moderation, chaosMix.Blank)
	}
	base, err := e.startSim(ctx, []byte(simCfg.String()), benchToken, chaosSimSeed,
		"--rate-limit", fmt.Sprint(chaosRPM), "--concurrency", fmt.Sprint(chaosCap))
	if err != nil {
		return nil, err
	}
	limitsFile, err := e.writeFile("limits.yaml", fmt.Appendf(nil,
		"limits:\n  replicate: {requests_per_minute: %d, concurrency: %d}\n", chaosRPM, chaosCap))
	if err != nil {
		return nil, err
	}
	fl := newFleet(e, workers, chaosWorkerSlots, e.subprocessEnv(
		"REPLICATE_API_TOKEN="+benchToken, "LIKENESS_REPLICATE_BASE_URL="+base+"/v1", "LIKENESS_LIMITS="+limitsFile))
	first, err := e.startWorkers(ctx, workers, chaosWorkerSlots, fl.environ, task.QueueFor("replicate"))
	if err != nil {
		return nil, err
	}
	copy(fl.workers, first)
	for i := range fl.gen {
		fl.gen[i] = 1
	}
	s, err := e.loadSpec(f)
	if err != nil {
		return nil, err
	}

	t0 := time.Now()
	sub, err := e.submit(ctx, s)
	if err != nil {
		return nil, err
	}
	e.progressf("submitted run %s (%d tasks) in %s", sub.RunID, sub.Tasks, since(t0))
	faults := &chaosFaults{e: e, sched: sched, redis: rds, minio: mio, simBase: base}
	wg.Add(2)
	go func() { defer wg.Done(); faults.run(faultCtx, ctx, t0) }()
	go func() { defer wg.Done(); fl.churn(faultCtx, t0, sched.killEvery) }()

	end, complete, err := e.waitChaos(ctx, sub.RunID, t0, timeout, base, fl)
	if err != nil {
		return nil, err
	}
	stopFaults() // the fleet stays up for the fan-in; what is down comes back
	wg.Wait()
	makespan := end.Sub(t0)
	outage := faults.downtime(t0, end)
	kills, restarts := fl.counts()
	if complete {
		e.progressf("run complete after %.1fs; %d workers killed, %d restarted after exiting on their own", makespan.Seconds(), kills, restarts)
	} else {
		e.progressf("gave up waiting after %.1fs: the run's counters never reached every task; %d workers killed, %d restarted", makespan.Seconds(), kills, restarts)
	}

	// The fan-in runs once every task is counted; give it a moment, then
	// audit what the user would read.
	st, err := e.runStatus(ctx, sub.RunID, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: read the run's counters: %v", ErrInfra, err)
	}
	for wait := time.Now().Add(20 * time.Second); complete && st.Finalized == 0 && time.Now().Before(wait); {
		time.Sleep(250 * time.Millisecond)
		if s2, err := e.runs.Get(ctx, sub.RunID); err == nil {
			st = s2
		}
	}
	a, err := e.audit(ctx, sub.RunID)
	if err != nil {
		return nil, err
	}
	ss, err := fetchStats(ctx, base, time.Minute, 0)
	if err != nil {
		return nil, err
	}

	res := ChaosResult{
		Scenario: ScenarioChaos, Tasks: st.Total, Succeeded: st.Succeeded, Failed: st.Failed,
		UniqueRecords:          a.unique,
		DuplicateRecords:       a.duplicateRecords + a.manifestRepeats + max(0, st.Done()-st.Total),
		MissingOutputs:         a.missingOutputs + max(0, st.Succeeded-a.succeeded),
		PaidPredictionsPerTask: round3(ratio(float64(ss.Created), float64(st.Total))),
		MakespanS:              round3(makespan.Seconds()),
		BoundS:                 round3(bound.Seconds()),
		OutageS:                round3(outage.Seconds()),
		WorkerKills:            kills,
		SlackS:                 slack.Seconds(),
	}
	e.progressf("counters: %d succeeded, %d failed, %d skipped, %d terminal of %d; fan-in ran %d time(s)",
		st.Succeeded, st.Failed, st.SkippedBudget+st.SkippedCanceled, st.Done(), st.Total, st.Finalized)
	e.progressf("bucket: %d records (%d tasks, %d named twice), %d succeeded with %d outputs missing or unreadable; manifest %d lines (%d repeats)",
		a.records, a.unique, a.duplicateRecords, a.succeeded, a.missingOutputs, a.manifestLines, a.manifestRepeats)
	if len(a.failedByClass) > 0 {
		var parts []string
		for k, n := range a.failedByClass {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(parts)
		e.progressf("records not succeeded: %s", strings.Join(parts, ", "))
	}
	e.progressf("sim: %d creates, %d paid predictions (%d moderated, %d blank, %d repeating an earlier one's exact input: see sim-provider.log), %d answered 503, %d random 429s, %d limit 429s, %d refused in the outage, %d invalid; max %d in flight",
		ss.Creates, ss.Created, ss.Moderated, ss.Blank, ss.RepeatedCreates, ss.ServerErrors, ss.ThrottledRandom, ss.Throttled-ss.ThrottledRandom, ss.OutageRefused, ss.Invalid, ss.MaxInFlight)
	e.progressf("makespan %.1fs against bound %.1fs + outage %.1fs + %.0fs = %.1fs", makespan.Seconds(), bound.Seconds(), outage.Seconds(), slack.Seconds(), (bound + outage + slack).Seconds())
	return res, nil
}

// waitChaos polls the run every 250 ms until its counters show every task
// terminal, timeout passes or ctx is done, reporting every 5 s. Redis
// being down is part of the scenario: a failed poll is retried.
func (e *env) waitChaos(ctx context.Context, run string, t0 time.Time, timeout time.Duration, base string, fl *fleet) (end time.Time, complete bool, err error) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := t0
	for {
		now := time.Now()
		st, err := e.runs.Get(ctx, run)
		if err == nil && st.Complete() {
			return now, true, nil
		}
		if now.Sub(t0) >= timeout {
			return now, false, nil
		}
		if now.Sub(last) >= 5*time.Second {
			last = now
			line := fmt.Sprintf("t=%.0fs: ", now.Sub(t0).Seconds())
			if err != nil {
				line += "run counters unreadable (" + err.Error() + ")"
			} else {
				line += fmt.Sprintf("%d/%d done (%d failed)", st.Done(), st.Total, st.Failed)
			}
			if ss, err := fetchStats(ctx, base, time.Minute, 0); err == nil {
				line += fmt.Sprintf("; sim: %d paid, %d in flight, %d refused in outage", ss.Created, ss.InFlight, ss.OutageRefused)
			}
			kills, restarts := fl.counts()
			line += fmt.Sprintf("; %d workers killed, %d restarted", kills, restarts)
			e.progressf("%s", line)
		}
		select {
		case <-ctx.Done():
			return now, false, ctx.Err()
		case <-tick.C:
		}
	}
}
