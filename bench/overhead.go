package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/sim"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/pkg/telemetry"
	"github.com/likeness-run/likeness/worker"
)

// The overhead scenario: the whole pipeline of a task (decode, record and
// cache lookups, cancel check, budget, fleet limits, the provider call,
// output checks, the output, cache entry and record written to the bucket,
// the terminal state counted in Redis) with a provider that costs nothing
// (the in-process simulator at latency 0, 64 px), beside a bare asynq
// handler that does nothing, on the same Redis, with the same asynq
// server configuration.
const (
	overheadTasks = 20000
	// overheadConcurrency matches the registry's fleet limit for sim
	// models (16 in flight), so the limiter is consulted on every task and
	// never makes one wait.
	overheadConcurrency = 16
	noopType            = "bench:noop"
	noopQueue           = "bench-noop"
)

func runOverhead(ctx context.Context, e *env) (Result, error) {
	n := pick(e.cfg.Tasks, overheadTasks)
	model := []specModel{{id: "zero", ref: "sim:kontext", params: "{latency_ms: 0, size: 64}"}}
	// Untraced, the pipeline works one run of n tasks. Traced (Config.
	// Telemetry set), it works four runs of n/4 in the order untraced,
	// traced, traced, untraced, so that a machine getting faster or slower
	// during the scenario weighs on both sides alike; on a shared 2-core VM
	// two separate runs of the same command differ by more than tracing
	// costs.
	blocks := []bool{false}
	if e.cfg.Telemetry != nil {
		blocks = []bool{false, true, true, false}
	}
	fans := make([]fanOut, len(blocks))
	total := 0
	for i := range blocks {
		fans[i] = fanOutFor(fmt.Sprintf("bench-overhead-%d", i+1), n/len(blocks), 4, model)
		total += fans[i].tasks()
	}
	perBlock := fans[0].tasks()
	e.progressf("%d tasks in %d run(s) of %d: the pipeline on sim:kontext (latency 0, 64 px) in this process, and as many asynq no-ops; concurrency %d",
		total, len(blocks), perBlock, overheadConcurrency)

	// The bare asynq baseline, with payloads the size of a generate task's.
	raw, err := e.runNoop(ctx, perBlock)
	if err != nil {
		return nil, err
	}
	e.progressf("asynq no-op: %d tasks in %s: %.0f tasks/s, handler p50 %s p99 %s",
		perBlock, raw.elapsed.Round(time.Millisecond), raw.perSecond(perBlock), Percentile(raw.durations, 0.5), Percentile(raw.durations, 0.99))

	var plain, traced timing
	for i, tr := range blocks {
		tel, side, label := (*telemetry.Telemetry)(nil), &plain, "pipeline"
		if tr {
			tel, side, label = e.cfg.Telemetry, &traced, "pipeline (traced)"
		}
		t, err := e.runPipeline(ctx, fans[i], tel)
		if err != nil {
			return nil, err
		}
		e.progressf("%s: %d tasks in %s: %.0f tasks/s, handler p50 %s p99 %s", label,
			len(t.durations), t.elapsed.Round(time.Millisecond), t.perSecond(len(t.durations)), Percentile(t.durations, 0.5), Percentile(t.durations, 0.99))
		side.add(t)
	}

	p99 := Percentile(plain.durations, 0.99) - Percentile(raw.durations, 0.99)
	res := OverheadResult{
		Scenario: ScenarioOverhead, Tasks: total,
		TasksPerS: round3(plain.perSecond(len(plain.durations))), RawAsynqTasksPerS: round3(raw.perSecond(perBlock)),
		Ratio:         round3(ratio(plain.perSecond(len(plain.durations)), raw.perSecond(perBlock))),
		P99OverheadMS: round3(float64(p99) / float64(time.Millisecond)),
	}
	if len(traced.durations) > 0 {
		res.TracedTasksPerS = round3(traced.perSecond(len(traced.durations)))
		res.TracingRatio = round3(ratio(res.TracedTasksPerS, res.TasksPerS))
	}
	return res, nil
}

// timing is what one side of the overhead scenario measured.
type timing struct {
	elapsed   time.Duration   // server start to the last handler return
	durations []time.Duration // handler wall time per successful task
}

func (t timing) perSecond(n int) float64 { return ratio(float64(n), t.elapsed.Seconds()) }

// add counts o's tasks and time into t.
func (t *timing) add(o timing) {
	t.elapsed += o.elapsed
	t.durations = append(t.durations, o.durations...)
}

// meter wraps a handler: it times every task of type typ and reports when
// n of them have succeeded.
type meter struct {
	typ  string
	n    int
	mu   sync.Mutex
	ds   []time.Duration
	last time.Time
	done chan struct{}
}

func newMeter(typ string, n int) *meter {
	return &meter{typ: typ, n: n, ds: make([]time.Duration, 0, n), done: make(chan struct{})}
}

func (m *meter) wrap(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		start := time.Now()
		err := h.ProcessTask(ctx, t)
		end := time.Now()
		if err != nil || t.Type() != m.typ {
			return err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.ds = append(m.ds, end.Sub(start))
		m.last = end
		if len(m.ds) == m.n {
			close(m.done)
		}
		return nil
	})
}

func (m *meter) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.ds)
}

// serve runs h on queue with the scenario's asynq configuration until the
// meter has seen every task, and returns the timing.
func (e *env) serve(ctx context.Context, queue string, h asynq.Handler, m *meter, what string) (timing, error) {
	srv := asynq.NewServer(e.redisOpt, asynq.Config{
		Concurrency: overheadConcurrency, Queues: map[string]int{queue: 1},
		DelayedTaskCheckInterval: 500 * time.Millisecond, TaskCheckInterval: 500 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, LogLevel: asynq.WarnLevel,
	})
	start := time.Now()
	if err := srv.Start(m.wrap(h)); err != nil {
		return timing{}, fmt.Errorf("%w: start asynq server: %v", ErrInfra, err)
	}
	defer srv.Shutdown()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-m.done:
			m.mu.Lock()
			defer m.mu.Unlock()
			return timing{elapsed: m.last.Sub(start), durations: m.ds}, nil
		case <-tick.C:
			e.progressf("%s: %d/%d done after %s", what, m.count(), m.n, since(start))
		case <-ctx.Done():
			return timing{}, ctx.Err()
		}
	}
}

// runNoop enqueues n no-op tasks and works them.
func (e *env) runNoop(ctx context.Context, n int) (timing, error) {
	q := asynq.NewClient(e.redisOpt)
	defer q.Close()
	payload := []byte(`{"pad":"` + strings.Repeat("x", 480) + `"}`) // about a generate payload's size
	start := time.Now()
	for i := range n {
		if _, err := q.EnqueueContext(ctx, asynq.NewTask(noopType, payload), asynq.Queue(noopQueue),
			asynq.TaskID(fmt.Sprintf("noop-%d", i)), asynq.MaxRetry(3)); err != nil {
			return timing{}, fmt.Errorf("enqueue no-op: %w", err)
		}
	}
	e.progressf("enqueued %d no-op tasks in %s", n, since(start))
	m := newMeter(noopType, n)
	return e.serve(ctx, noopQueue, asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }), m, "asynq no-op")
}

// runPipeline submits the spec and works it with an in-process worker's
// handler, behind the same asynq server configuration as the no-op, traced
// by tel when it is not nil.
func (e *env) runPipeline(ctx context.Context, f fanOut, tel *telemetry.Telemetry) (timing, error) {
	// The simulator renders each (character, prompt) once and reuses it:
	// the provider is meant to cost nothing here, and rendering and
	// encoding a PNG for every task cost more than the pipeline around it.
	// The worker still decodes and checks every output.
	gen, err := sim.New(sim.Config{Variants: 1})
	if err != nil {
		return timing{}, err
	}
	w, err := worker.New(worker.Config{
		Redis: e.redisOpt, Store: e.blobs, Runs: e.runs,
		Generators:  map[string]provider.Generator{"sim": gen},
		Limiter:     ratelimit.New(e.rdb, ratelimit.Config{}),
		Concurrency: overheadConcurrency, Logger: e.cfg.Logger,
		Telemetry: tel,
	})
	if err != nil {
		return timing{}, err
	}
	s, err := e.loadSpec(f)
	if err != nil {
		return timing{}, err
	}
	start := time.Now()
	sub, err := e.submit(ctx, s)
	if err != nil {
		return timing{}, err
	}
	e.progressf("submitted run %s (%d tasks) in %s", sub.RunID, sub.Tasks, since(start))
	m := newMeter(task.TypeGenerate, sub.Tasks)
	t, err := e.serve(ctx, task.QueueFor("sim"), w.Handler(), m, "pipeline")
	if err != nil {
		return timing{}, err
	}
	st, err := e.runs.Get(ctx, sub.RunID)
	if err != nil {
		return timing{}, err
	}
	if st.Succeeded != sub.Tasks {
		return timing{}, fmt.Errorf("pipeline: %d of %d tasks succeeded", st.Succeeded, sub.Tasks)
	}
	return t, nil
}
