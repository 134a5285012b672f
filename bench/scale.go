package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/image/draw"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/sim"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/worker"
)

// The scale scenario: does a big run stay light? A spec of 100,000 tasks
// (50 characters × 100 prompts × 4 simulated models × 5 variants) is
// submitted through
// the real producer on the real Redis and MinIO; then every task is
// finished by the bench itself, taking it from the queue with an asynq
// server and ending it the way a worker's settle does (the output and the
// record stored in the bucket, the task marked settling and counted by
// runstate's Finish, which also indexes the output in the cache and pushes
// the record onto the run's fold list), with no provider in between: a
// provider call would only make the scenario slower without changing what
// it measures, which is the weight of a run in Redis and the run's fan-in.
// The run:fold tasks Finish calls for are served meanwhile, on the control
// queue, by an in-process worker's handler (worker.Handler, the real fold).
// The fan-in then runs
// in a separate `likeness worker` process, the real handler of the
// run:finalize task, whose peak RSS the kernel reports when it exits.
const (
	scaleTasks      = 100_000
	scaleCharacters = 50
	// scaleFinishers is how many tasks the bench finishes at once.
	scaleFinishers = 32
	// scaleOutputPX is the side of the outputs the bench stores: the
	// size the overhead scenario's simulated model renders.
	scaleOutputPX = 64
)

// scaleModels are the spec's four models: simulated, zero latency, 64 px.
var scaleModels = []specModel{
	{id: "kontext", ref: "sim:kontext", params: "{latency_ms: 0, size: 64}"},
	{id: "ideogram", ref: "sim:ideogram", params: "{latency_ms: 0, size: 64}"},
	{id: "seededit", ref: "sim:seededit", params: "{latency_ms: 0, size: 64}"},
	{id: "gpt-image", ref: "sim:gpt-image", params: "{latency_ms: 0, size: 64}"},
}

// scaleFanOut is the scenario's spec for n tasks: 50 characters and the
// four models, shaped as the other scenarios' specs (fanOutFor): up to 100
// prompts, then variants; 100 prompts and 5 variants for 100,000.
func scaleFanOut(n int) fanOut {
	return fanOutFor("bench-scale", n, scaleCharacters, scaleModels)
}

func runScale(ctx context.Context, e *env) (Result, error) {
	f := scaleFanOut(pick(e.cfg.Tasks, scaleTasks))
	s, err := e.loadSpec(f)
	if err != nil {
		return nil, err
	}
	n := f.tasks()
	e.progressf("%d tasks: %d characters × %d prompts × %d models × %d variants; the bench finishes them (no provider calls) and a `likeness worker` process finalizes the run",
		n, f.characters, f.prompts, len(f.models), f.variants)

	base, err := e.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	sub, err := e.submit(ctx, s)
	if err != nil {
		return nil, err
	}
	submitS := time.Since(start).Seconds()
	queued, err := e.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	e.progressf("submitted run %s (%d tasks) in %.2fs; Redis holds %d bytes more", sub.RunID, sub.Tasks, submitS, queued-base)

	if err := e.finishAll(ctx, sub.RunID, sub.Tasks); err != nil {
		return nil, err
	}
	finished, err := e.usedMemory(ctx)
	if err != nil {
		return nil, err
	}
	e.progressf("all %d tasks finished; Redis holds %d bytes more than before the submit", sub.Tasks, finished-base)

	fin, err := e.finalizeInWorker(ctx, sub.RunID)
	if err != nil {
		return nil, err
	}
	pageKB, err := e.largestReportPage(ctx, sub.RunID)
	if err != nil {
		return nil, err
	}
	if err := e.checkFinalized(ctx, sub.RunID, sub.Tasks); err != nil {
		return nil, err
	}
	return ScaleResult{
		Scenario: ScenarioScale, Tasks: sub.Tasks, SubmitS: round3(submitS),
		RedisBytesPerQueuedTask:   round3(float64(queued-base) / float64(sub.Tasks)),
		RedisBytesPerFinishedTask: round3(float64(finished-base) / float64(sub.Tasks)),
		FinalizeS:                 round3(fin.elapsed.Seconds()),
		FinalizePeakRSSMB:         round3(float64(fin.maxRSSKiB) / 1024),
		LargestReportPageKB:       round3(pageKB),
	}, nil
}

// usedMemory is Redis's used_memory, after a lazy free has settled.
func (e *env) usedMemory(ctx context.Context) (int64, error) {
	var last int64 = -1
	for range 20 { // lazy frees (UNLINK) finish in the background
		info, err := e.rdb.Info(ctx, "memory").Result()
		if err != nil {
			return 0, fmt.Errorf("%w: redis INFO memory: %v", ErrInfra, err)
		}
		v, ok := infoField(info, "used_memory")
		if !ok {
			return 0, fmt.Errorf("%w: redis INFO memory has no used_memory", ErrInfra)
		}
		if v == last {
			return v, nil
		}
		last = v
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return last, nil
}

// infoField reads an integer field of an INFO reply.
func infoField(info, name string) (int64, bool) {
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// finishAll takes every task of the run from the queue and ends it as a
// worker does once it has an output: the output, then (marked settling)
// the record, then the count. It returns when the run is complete.
func (e *env) finishAll(ctx context.Context, run string, n int) error {
	outputs := map[string][]byte{}
	for i := range scaleCharacters {
		outputs[fmt.Sprintf("c%d", i)] = smallOutput(i)
	}
	q := asynq.NewClient(e.redisOpt)
	defer q.Close()
	h := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		p, err := task.DecodeGenerate(t.Payload())
		if err != nil {
			return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		return e.finishTask(ctx, q, p, outputs[p.Character])
	})
	m := newMeter(task.TypeGenerate, n)
	srv := asynq.NewServer(e.redisOpt, asynq.Config{
		Concurrency: scaleFinishers, Queues: map[string]int{task.QueueFor("sim"): 1},
		TaskCheckInterval: 100 * time.Millisecond, ShutdownTimeout: 5 * time.Second, LogLevel: asynq.WarnLevel,
	})
	folds, err := e.serveFolds()
	if err != nil {
		return err
	}
	defer folds.Shutdown()
	start := time.Now()
	if err := srv.Start(m.wrap(h)); err != nil {
		return fmt.Errorf("%w: start asynq server: %v", ErrInfra, err)
	}
	defer srv.Shutdown()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-m.done:
			srv.Shutdown()
			e.progressf("finished %d tasks in %s", n, since(start))
			if err := e.awaitFolds(ctx, run); err != nil {
				return err
			}
			folds.Shutdown()
			st, err := e.runs.Get(ctx, run)
			if err != nil {
				return err
			}
			if !st.Complete() || st.Succeeded != n {
				return fmt.Errorf("run %s after every task finished: %d of %d succeeded", run, st.Succeeded, n)
			}
			return nil
		case <-tick.C:
			e.progressf("finishing: %d/%d after %s", m.count(), n, since(start))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// finishTask stores a task's output and record and counts it, in the order
// and with the runstate calls of a worker's settle (MarkSettling, the
// record, Finish with the record for the fold list and the output for the
// cache index).
// A record that completes a fold batch enqueues its run:fold task on q.
func (e *env) finishTask(ctx context.Context, q *asynq.Client, p task.Generate, output []byte) error {
	now := time.Now()
	outKey := store.OutputKey(p.RunID, p.Character, p.Model, p.Prompt, p.Variant, "png")
	if err := e.blobs.Put(ctx, outKey, output, "image/png"); err != nil {
		return err
	}
	sum := sha256.Sum256(output)
	provName, _, _ := strings.Cut(p.ModelRef, ":")
	rec := manifest.Record{
		Run: p.RunID, Task: p.TaskID, Character: p.Character, Prompt: p.Prompt, PromptText: p.PromptText,
		Model: p.Model, ModelRef: p.ModelRef, Provider: provName, Variant: p.Variant, Params: p.Params,
		BaseSeed: p.Seed, Seed: p.Seed, Status: manifest.Succeeded, ReferenceKey: p.RefKey,
		OutputKey: outKey, SHA256: hex.EncodeToString(sum[:]), Width: scaleOutputPX, Height: scaleOutputPX,
		ContentType: "image/png", Bytes: int64(len(output)), ContentKey: p.ContentKey(), Attempts: 1,
		AttemptLog: []manifest.Attempt{{N: 1, Seed: p.Seed, StartedAt: now, OutputKey: outKey}},
		StartedAt:  now, FinishedAt: now, Worker: "bench-scale",
	}
	if !p.EnqueuedAt.IsZero() {
		rec.QueueWaitMS = now.Sub(p.EnqueuedAt).Milliseconds()
	}
	if err := e.runs.MarkSettling(ctx, p.RunID, p.TaskID, fmt.Sprintf("%s/%d", rec.Status, rec.Attempts)); err != nil {
		return err
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := e.blobs.Put(ctx, store.RecordKey(p.RunID, p.TaskID), raw, "application/json"); err != nil {
		return err
	}
	prog, err := e.runs.Finish(ctx, runstate.FinishRequest{
		Run: p.RunID, Task: p.TaskID, Status: rec.Status, ContentKey: rec.ContentKey, Record: raw,
	})
	if err != nil {
		return err
	}
	if prog.FoldBatch > 0 {
		t, opts := task.NewFold(p.RunID, prog.FoldBatch)
		if _, err := q.EnqueueContext(ctx, t, opts...); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return fmt.Errorf("%w: enqueue fold: %v", ErrInfra, err)
		}
	}
	return nil
}

// serveFolds serves the control queue's run:fold tasks while the bench
// finishes tasks, with the handler of an in-process worker (the worker's
// own fold). No run:finalize is queued meanwhile: the bench enqueues it
// once the folds are done and this server is stopped.
func (e *env) serveFolds() (*asynq.Server, error) {
	gen, err := sim.New(sim.Config{Variants: 1})
	if err != nil {
		return nil, err
	}
	w, err := worker.New(worker.Config{
		Redis: e.redisOpt, Store: e.blobs, Runs: e.runs,
		Generators: map[string]provider.Generator{"sim": gen}, Logger: e.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	srv := asynq.NewServer(e.redisOpt, asynq.Config{
		Concurrency: 2, Queues: map[string]int{task.QueueControl: 1},
		TaskCheckInterval: 100 * time.Millisecond, ShutdownTimeout: 30 * time.Second, LogLevel: asynq.WarnLevel,
	})
	if err := srv.Start(w.Handler()); err != nil {
		return nil, fmt.Errorf("%w: start asynq server: %v", ErrInfra, err)
	}
	return srv, nil
}

// awaitFolds waits until the run's fold list holds less than a batch: the
// last fold task has run.
func (e *env) awaitFolds(ctx context.Context, run string) error {
	start := time.Now()
	for {
		n, err := e.runs.FoldLen(ctx, run)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInfra, err)
		}
		if n < int64(e.runs.FoldSize()) {
			e.progressf("records folded into parts (%d left on the fold list) %s after the last task", n, since(start))
			return nil
		}
		if time.Since(start) > time.Minute {
			return fmt.Errorf("run %s: %d records still on the fold list a minute after the last task", run, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// smallOutput is character i's reference scaled to scaleOutputPX, as PNG.
func smallOutput(i int) []byte {
	src, _ := png.Decode(bytes.NewReader(reference(i))) // reference encodes a valid PNG
	dst := image.NewNRGBA(image.Rect(0, 0, scaleOutputPX, scaleOutputPX))
	draw.BiLinear.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
	var buf bytes.Buffer
	_ = png.Encode(&buf, dst)
	return buf.Bytes()
}

// finalizeMemLimit is the finalizing worker's GOMEMLIMIT: the Go runtime's
// soft memory limit, set as a container's limit would set it (docs/
// deploy.md), so its garbage collector keeps the heap below the 300 MB the
// scenario allows while two sheets are drawn at once.
const finalizeMemLimit = "240MiB"

// finalizeRun is what the finalizing worker process measured.
type finalizeRun struct {
	elapsed   time.Duration
	maxRSSKiB int64
}

// finalizeInWorker enqueues the run's run:finalize task as the last task's
// worker would, starts one `likeness worker` process, waits until the run
// is finalized, stops the worker and reads its peak RSS. The time counts
// from the worker's start, so it includes the process starting up.
func (e *env) finalizeInWorker(ctx context.Context, run string) (finalizeRun, error) {
	q := asynq.NewClient(e.redisOpt)
	defer q.Close()
	t, opts := task.NewFinalize(run, nil)
	if _, err := q.EnqueueContext(ctx, t, opts...); err != nil {
		return finalizeRun{}, fmt.Errorf("%w: enqueue finalize: %v", ErrInfra, err)
	}
	start := time.Now()
	// At info level the worker logs the fan-in's phases ("run finalized").
	// With --dir it also leaves a CPU profile of the fan-in there.
	var extra []string
	if !e.tmpDir {
		extra = []string{"--cpuprofile", filepath.Join(e.dir, "finalize.cpu.pprof")}
	}
	ps, err := e.startWorkers(ctx, 1, 4, e.subprocessEnv("LIKENESS_LOG_LEVEL=info", "GOMEMLIMIT="+finalizeMemLimit), task.QueueControl, extra...)
	if err != nil {
		return finalizeRun{}, err
	}
	w := ps[0]
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for {
		st, err := e.runs.Get(ctx, run)
		if err != nil {
			return finalizeRun{}, err
		}
		if st.Finalized > 0 {
			break
		}
		if err := w.exited(); err != nil {
			return finalizeRun{}, errors.New(err.Error() + "\n" + tail(w.log, 20))
		}
		if time.Since(last) >= 10*time.Second {
			e.progressf("finalizing for %s", since(start))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return finalizeRun{}, ctx.Err()
		case <-tick.C:
		}
	}
	res := finalizeRun{elapsed: time.Since(start)}
	w.stop(10 * time.Second)
	if ru, ok := w.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.maxRSSKiB = int64(ru.Maxrss) // KiB on Linux
	}
	e.progressf("finalized in %.2fs by a worker whose peak RSS was %.1f MB", res.elapsed.Seconds(), float64(res.maxRSSKiB)/1024)
	for line := range strings.SplitSeq(tail(w.log, 50), "\n") {
		if strings.Contains(line, `"run finalized"`) {
			e.progressf("worker: %s", line)
		}
	}
	return res, nil
}

// largestReportPage is the size of the run's largest report page, in KiB.
func (e *env) largestReportPage(ctx context.Context, run string) (float64, error) {
	pages, err := e.blobs.List(ctx, store.RunPrefix(run)+"report/")
	if err != nil {
		return 0, fmt.Errorf("%w: list report pages: %v", ErrInfra, err)
	}
	if len(pages) == 0 {
		return 0, fmt.Errorf("run %s was finalized but has no report pages", run)
	}
	var largest int64
	for _, p := range pages {
		largest = max(largest, p.Size)
	}
	e.progressf("%d report pages, the largest %.1f KiB", len(pages), float64(largest)/1024)
	return float64(largest) / 1024, nil
}

// checkFinalized checks that the fan-in counted every task in run.json.
func (e *env) checkFinalized(ctx context.Context, run string, n int) error {
	raw, err := e.blobs.Get(ctx, store.SummaryKey(run))
	if err != nil {
		return fmt.Errorf("%w: read run.json: %v", ErrInfra, err)
	}
	var sum manifest.Summary
	if err := json.Unmarshal(raw, &sum); err != nil {
		return fmt.Errorf("run.json of %s: %w", run, err)
	}
	if sum.Succeeded != n || len(sum.UnreadableRecords) > 0 {
		return fmt.Errorf("run.json of %s counts %d succeeded of %d (%d unreadable records)", run, sum.Succeeded, n, len(sum.UnreadableRecords))
	}
	jsonl, err := e.blobs.Get(ctx, store.ManifestKey(run))
	if err != nil {
		return fmt.Errorf("%w: read manifest.jsonl: %v", ErrInfra, err)
	}
	if lines := bytes.Count(jsonl, []byte("\n")); lines != n {
		return fmt.Errorf("manifest.jsonl of %s has %d lines, want %d", run, lines, n)
	}
	e.progressf("run.json counts %d succeeded; manifest.jsonl has %d lines, %.1f MB", sum.Succeeded, n, float64(len(jsonl))/(1<<20))
	return nil
}
