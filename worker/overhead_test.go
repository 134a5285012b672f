package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/scheduler"
	"github.com/likeness-run/likeness/worker"
)

// roundTrips counts the commands and pipelines a Redis client sends: each
// is one round trip.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { r.n.Add(1); return next(ctx, cmd) }
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { r.n.Add(1); return next(ctx, cmds) }
}

// countingStore counts the requests made to the object store it wraps,
// by kind and key.
type countingStore struct {
	*store.S3
	mu   sync.Mutex
	reqs []string // "PUT key", "GET key", "LIST prefix"
}

func (c *countingStore) note(s string) { c.mu.Lock(); c.reqs = append(c.reqs, s); c.mu.Unlock() }

func (c *countingStore) Put(ctx context.Context, key string, data []byte, ct string) error {
	c.note("PUT " + key)
	return c.S3.Put(ctx, key, data, ct)
}

func (c *countingStore) Get(ctx context.Context, key string) ([]byte, error) {
	c.note("GET " + key)
	return c.S3.Get(ctx, key)
}

func (c *countingStore) List(ctx context.Context, prefix string) ([]store.Info, error) {
	c.note("LIST " + prefix)
	return c.S3.List(ctx, prefix)
}

// since returns the requests made after the first n.
func (c *countingStore) since(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.reqs[n:]...)
}

func (c *countingStore) len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.reqs) }

// probe is a generator that answers good images and notes how many Redis
// round trips the run state had made when it was called.
type probe struct {
	trips *roundTrips
	mu    sync.Mutex
	at    []int64
}

func (p *probe) Generate(_ context.Context, req provider.Request) (*provider.Result, error) {
	p.mu.Lock()
	p.at = append(p.at, p.trips.n.Load())
	p.mu.Unlock()
	return good(req)
}

func (p *probe) calls() int { p.mu.Lock(); defer p.mu.Unlock(); return len(p.at) }

// overheadFleet is a worker whose run state and object store are counted,
// driven task by task through its handler.
type overheadFleet struct {
	t      *testing.T
	trips  *roundTrips
	blobs  *countingStore
	runs   *runstate.Store
	gen    *probe
	w      *worker.Worker
	opt    asynq.RedisClientOpt
	client *asynq.Client
}

func newOverheadFleet(t *testing.T, s3 *store.S3) *overheadFleet {
	t.Helper()
	addr, db := testenv.RedisDB(t)
	trips := &roundTrips{}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	rdb.AddHook(trips)
	limits := redis.NewClient(&redis.Options{Addr: addr, DB: db}) // not counted: the limiter is not run state
	t.Cleanup(func() { rdb.Close(); limits.Close() })
	f := &overheadFleet{t: t, trips: trips, blobs: &countingStore{S3: s3}, runs: runstate.New(rdb, runstate.Config{}),
		gen: &probe{trips: trips}, opt: asynq.RedisClientOpt{Addr: addr, DB: db}}
	w, err := worker.New(worker.Config{
		Redis: f.opt, Store: f.blobs, Runs: f.runs,
		Generators: map[string]provider.Generator{"sim": f.gen},
		Limiter:    ratelimit.New(limits, ratelimit.Config{}),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.w = w
	f.client = asynq.NewClient(f.opt)
	t.Cleanup(func() { f.client.Close() })
	return f
}

// submit enqueues s and returns its tasks, as the handler receives them.
func (f *overheadFleet) submit(s *spec.Spec) []*asynq.Task {
	f.t.Helper()
	insp := asynq.NewInspector(f.opt)
	defer insp.Close()
	p, err := scheduler.New(scheduler.Config{Queue: f.client, Tasks: insp, Store: f.blobs.S3, Runs: f.runs,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := p.Submit(context.Background(), s); err != nil {
		f.t.Fatal(err)
	}
	infos, err := insp.ListPendingTasks(task.QueueFor("sim"))
	if err != nil {
		f.t.Fatal(err)
	}
	var out []*asynq.Task
	for _, i := range infos {
		out = append(out, asynq.NewTask(i.Type, i.Payload))
	}
	return out
}

// TestFreshTaskRoundTrips works fresh tasks one at a time against real
// MinIO and Redis and counts what each costs: two object-store requests
// (the output and the record: no lookup that misses), one Redis round trip
// of run state before the provider is called (claim, state, budget and the
// cache index in one pipeline) and three in all. A second run of the same
// requests, against a Redis that lost the index, rebuilds it from the
// bucket's records and calls no provider.
func TestFreshTaskRoundTrips(t *testing.T) {
	t.Parallel()
	s3, _, _ := newS3Pair(t)
	f := newOverheadFleet(t, s3)
	ctx := context.Background()
	s := loadSpec(t, specWith("a", "b", "c", "d", "e"))
	tasks := f.submit(s)
	if len(tasks) != 5 {
		t.Fatalf("%d tasks enqueued; want 5", len(tasks))
	}
	h := f.w.Handler()
	for i, tk := range tasks {
		reqs, trips := f.blobs.len(), f.trips.n.Load()
		if err := h.ProcessTask(ctx, tk); err != nil {
			t.Fatalf("task %d: %v", i, err)
		}
		if i == 0 {
			continue // the first task rebuilds the (empty) index, loads the reference and the scripts
		}
		got := f.blobs.since(reqs)
		if len(got) != 2 || !strings.HasPrefix(got[0], "PUT runs/") || !strings.HasSuffix(got[1], ".json") || !strings.HasPrefix(got[1], "PUT runs/") {
			t.Errorf("task %d made object-store requests %q; want the output's PUT and the record's", i, got)
		}
		if before := f.gen.at[i] - trips; before != 1 {
			t.Errorf("task %d: %d Redis round trips of run state before the provider call; want 1", i, before)
		}
		if all := f.trips.n.Load() - trips; all != 3 {
			t.Errorf("task %d: %d Redis round trips of run state in all; want 3", i, all)
		}
	}
	if f.gen.calls() != 5 {
		t.Fatalf("%d provider calls; want 5", f.gen.calls())
	}

	// The same requests in another run, on a Redis that never saw them:
	// the worker rebuilds the index from the records, then finds every
	// output in it.
	g := newOverheadFleet(t, s3)
	again := loadSpec(t, strings.Replace(specWith("a", "b", "c", "d", "e"), "name: wt", "name: wt-again", 1))
	h2 := g.w.Handler()
	for i, tk := range g.submit(again) {
		if err := h2.ProcessTask(ctx, tk); err != nil {
			t.Fatalf("second run, task %d: %v", i, err)
		}
	}
	if g.gen.calls() != 0 {
		t.Errorf("second run made %d provider calls; want 0 (every output is stored)", g.gen.calls())
	}
	runs, err := g.runs.List(ctx, 1)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %v, %v", runs, err)
	}
	st, err := g.runs.Get(ctx, runs[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.Succeeded != 5 || st.Cached != 5 || st.CostUSD != 0 {
		t.Errorf("second run: %d succeeded, %d cached, $%.2f; want 5, 5, $0", st.Succeeded, st.Cached, st.CostUSD)
	}
}

// TestSubSecondRateWaitStaysInTheDelivery: a provider asking for 300 ms is
// called again after 300 ms inside the same delivery, not requeued for the
// whole second asynq schedules in.
func TestSubSecondRateWaitStaysInTheDelivery(t *testing.T) {
	t.Parallel()
	gen := &scripted{script: map[string][]step{"p": {func(provider.Request) (*provider.Result, error) {
		return nil, &provider.Error{Class: provider.Rate, Provider: "sim", Status: 429, Message: "slow down", RetryAfter: 300 * time.Millisecond}
	}}}}
	s3, _ := newS3(t)
	f := newOverheadFleet(t, s3)
	f.w = mustWorker(t, f, gen)
	tasks := f.submit(loadSpec(t, specWith("p")))
	if err := f.w.Handler().ProcessTask(context.Background(), tasks[0]); err != nil {
		t.Fatalf("one delivery: %v; want the task done after the wait", err)
	}
	at := gen.times()
	if len(at) != 2 {
		t.Fatalf("%d provider calls in the delivery; want 2", len(at))
	}
	if d := at[1].Sub(at[0]); d < 300*time.Millisecond {
		t.Errorf("called again after %s; want at least the 300ms asked", d)
	}
	recs := f.records(t)
	if len(recs) != 1 || recs[0].Status != manifest.Succeeded || recs[0].Attempts != 2 || recs[0].AttemptLog[0].Class != string(provider.Rate) {
		t.Errorf("records %+v; want one success after a RATE attempt", recs)
	}
}

func mustWorker(t *testing.T, f *overheadFleet, gen provider.Generator) *worker.Worker {
	t.Helper()
	w, err := worker.New(worker.Config{
		Redis: f.opt, Store: f.blobs, Runs: f.runs,
		Generators: map[string]provider.Generator{"sim": gen},
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (f *overheadFleet) records(t *testing.T) []manifest.Record {
	t.Helper()
	ctx := context.Background()
	runs, err := f.runs.List(ctx, 1)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs: %v, %v", runs, err)
	}
	infos, err := f.blobs.S3.List(ctx, store.RecordsPrefix(runs[0]))
	if err != nil {
		t.Fatal(err)
	}
	var out []manifest.Record
	for _, i := range infos {
		raw, err := f.blobs.S3.Get(ctx, i.Key)
		if err != nil {
			t.Fatal(err)
		}
		var r manifest.Record
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(fmt.Errorf("%s: %w", i.Key, err))
		}
		out = append(out, r)
	}
	return out
}
