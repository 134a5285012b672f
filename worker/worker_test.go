package worker_test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
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
	"github.com/likeness-run/likeness/pkg/telemetry"
	"github.com/likeness-run/likeness/scheduler"
	"github.com/likeness-run/likeness/worker"
)

// step is one scripted provider answer.
type step func(req provider.Request) (*provider.Result, error)

// scripted is a generator whose answers are scripted per prompt text; once a
// prompt's script runs out, it answers with a good image. It records every
// call.
type scripted struct {
	mu       sync.Mutex
	script   map[string][]step
	calls    []provider.Request
	at       []time.Time
	track    bool // count calls in flight
	inFlight int
	maxIn    int
}

func (s *scripted) maxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxIn
}

func (s *scripted) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	s.mu.Lock()
	s.calls = append(s.calls, req)
	s.at = append(s.at, time.Now())
	if s.track {
		s.inFlight++
		s.maxIn = max(s.maxIn, s.inFlight)
		defer func() { s.mu.Lock(); s.inFlight--; s.mu.Unlock() }()
	}
	var st step
	if q := s.script[req.Prompt]; len(q) > 0 {
		st, s.script[req.Prompt] = q[0], q[1:]
	}
	s.mu.Unlock()
	if st != nil {
		return st(req)
	}
	return good(req)
}

func (s *scripted) callsFor(prompt string) []provider.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []provider.Request
	for _, c := range s.calls {
		if c.Prompt == prompt {
			out = append(out, c)
		}
	}
	return out
}

func (s *scripted) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func encodePNG(img image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// picture draws a non-blank image of the requested size.
func picture(w, h int, fill func(x, y int) color.Color) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, fill(x, y))
		}
	}
	return encodePNG(img)
}

func good(req provider.Request) (*provider.Result, error) {
	data := picture(req.Width, req.Height, func(x, y int) color.Color {
		return color.NRGBA{uint8(x * 3), uint8(y * 5), uint8(req.Seed), 255}
	})
	return &provider.Result{Image: provider.Image{Data: data, ContentType: "image/png"},
		RequestID: fmt.Sprintf("req-%d", req.Seed), CostUSD: 0.04, Latency: 5 * time.Millisecond}, nil
}

func blank(req provider.Request) (*provider.Result, error) {
	data := picture(req.Width, req.Height, func(int, int) color.Color { return color.Black })
	return &provider.Result{Image: provider.Image{Data: data}, RequestID: "blank", CostUSD: 0.04}, nil
}

func fail(class provider.Class, msg string) step {
	return func(provider.Request) (*provider.Result, error) {
		return nil, &provider.Error{Class: class, Provider: "sim", Status: 500, Message: msg, RetryAfter: time.Second}
	}
}

// bundle is one test's fleet: a Redis database of its own, a local store,
// a producer and a worker.
type bundle struct {
	t      *testing.T
	redis  asynq.RedisClientOpt
	runs   *runstate.Store
	blobs  testStore
	worker *worker.Worker
	queue  *asynq.Client
	tel    *telemetry.Telemetry
}

// testStore is what a bundle needs of its store: *store.Dir and *store.S3.
type testStore interface {
	worker.Blobs
	PutIfAbsent(ctx context.Context, key string, data []byte, contentType string) (bool, error)
}

func setup(t *testing.T, gen provider.Generator, blobs testStore) *bundle {
	t.Helper()
	addr, db := testenv.RedisDB(t)
	return setupOn(t, addr, db, gen, blobs, options{})
}

// options vary a bundle's worker.
type options struct {
	limits      map[string]ratelimit.Limit
	concurrency int
	tagger      worker.Tagger
	tel         *telemetry.Telemetry
	webhook     worker.Webhook
	log         io.Writer // worker logs; default discarded
	// infraBackoffCap caps the pause between infrastructure retries.
	infraBackoffCap time.Duration
	// shutdownTimeout is the worker's; default 5s.
	shutdownTimeout time.Duration
}

// setupOn starts a worker on a given Redis database, so several workers can
// form one fleet.
func setupOn(t *testing.T, addr string, db int, gen provider.Generator, blobs testStore, o options) *bundle {
	t.Helper()
	opt := asynq.RedisClientOpt{Addr: addr, DB: db}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { rdb.Close() })
	if blobs == nil {
		dir, err := store.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		blobs = dir
	}
	b := &bundle{t: t, redis: opt, runs: runstate.New(rdb, runstate.Config{}), blobs: blobs, tel: o.tel}
	if o.concurrency == 0 {
		o.concurrency = 4
	}
	w, err := worker.New(worker.Config{
		Redis: opt, Store: blobs, Runs: b.runs,
		Generators:  map[string]provider.Generator{"sim": gen},
		Limiter:     ratelimit.New(rdb, ratelimit.Config{}),
		Limits:      o.limits,
		Tagger:      o.tagger,
		Telemetry:   o.tel,
		Webhook:     o.webhook,
		Concurrency: o.concurrency, BackoffBase: 10 * time.Millisecond, BackoffCap: 20 * time.Millisecond,
		InfraBackoffCap: o.infraBackoffCap,
		PollInterval:    50 * time.Millisecond, ShutdownTimeout: cmp.Or(o.shutdownTimeout, 5*time.Second),
		Logger: slog.New(slog.NewTextHandler(cmp.Or[io.Writer](o.log, io.Discard), nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	b.worker = w
	b.queue = asynq.NewClient(opt)
	t.Cleanup(func() { b.queue.Close() })
	return b
}

var refPNG = picture(64, 80, func(x, y int) color.Color { return color.NRGBA{uint8(x * 4), 90, uint8(y * 3), 255} })

func loadSpec(t *testing.T, body string) *spec.Spec {
	t.Helper()
	fsys := fstest.MapFS{"ref.png": {Data: refPNG}}
	s, err := spec.Parse("test.yaml", []byte(body), fsys, provider.DefaultRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func specWith(prompts ...string) string {
	var b strings.Builder
	b.WriteString("version: 1\nname: wt\ncharacters:\n  - {id: ann, reference: ref.png}\nprompts:\n")
	for i, p := range prompts {
		fmt.Fprintf(&b, "  - {id: p%d, text: %q}\n", i, p)
	}
	b.WriteString("models:\n  - {id: m, model: sim:kontext, params: {size: 64, aspect_ratio: \"1:1\"}}\n")
	b.WriteString("output_retries: 2\nmax_attempts: 3\nseed: 7\n")
	return b.String()
}

// run submits s and waits until the fan-in has run.
func (b *bundle) run(s *spec.Spec) (*runstate.Status, []manifest.Record) {
	b.t.Helper()
	insp := asynq.NewInspector(b.redis)
	defer insp.Close()
	p, err := scheduler.New(scheduler.Config{Queue: b.queue, Tasks: insp, Store: b.blobs, Runs: b.runs, Telemetry: b.tel,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.t.Fatal(err)
	}
	ctx := context.Background()
	sub, err := p.Submit(ctx, s)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.wait(sub.RunID)
}

// wait waits until the run is complete and finalized, and reads its manifest.
func (b *bundle) wait(run string) (*runstate.Status, []manifest.Record) {
	b.t.Helper()
	return b.waitFor(run, 60*time.Second)
}

// waitFor is wait with a deadline. Errors reading the run are retried
// until it (Redis may be restarting).
func (b *bundle) waitFor(run string, timeout time.Duration) (*runstate.Status, []manifest.Record) {
	b.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		st, err := b.runs.Get(ctx, run)
		if err != nil {
			if time.Now().After(deadline) {
				b.t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if st.Complete() && st.Finalized > 0 {
			raw, err := b.blobs.Get(ctx, store.ManifestKey(run))
			if err != nil {
				b.t.Fatal(err)
			}
			recs, err := manifest.ReadJSONL(bytes.NewReader(raw))
			if err != nil {
				b.t.Fatal(err)
			}
			return st, recs
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("run %s did not finish: %+v", run, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func byPrompt(recs []manifest.Record) map[string]manifest.Record {
	m := make(map[string]manifest.Record)
	for _, r := range recs {
		m[r.PromptText] = r
	}
	return m
}

func TestRetriesByFailureClass(t *testing.T) {
	t.Parallel()
	gen := &scripted{script: map[string][]step{
		"blank then good":      {blank},
		"transient then good":  {fail(provider.Transient, "503")},
		"rate then good":       {fail(provider.Rate, "throttled")},
		"bad input":            {fail(provider.Input, "prompt too long")},
		"always moderated":     {fail(provider.Safety, "nsfw"), fail(provider.Safety, "nsfw"), fail(provider.Safety, "nsfw"), fail(provider.Safety, "nsfw")},
		"transient every time": {fail(provider.Transient, "a"), fail(provider.Transient, "b"), fail(provider.Transient, "c"), fail(provider.Transient, "d")},
	}}
	b := setup(t, gen, nil)
	s := loadSpec(t, specWith("blank then good", "transient then good", "rate then good", "bad input", "always moderated", "transient every time", "fine"))
	st, recs := b.run(s)
	if st.Total != 7 || st.Succeeded != 4 || st.Failed != 3 || st.Finalized != 1 {
		t.Errorf("status: total %d succeeded %d failed %d finalized %d; want 7, 4, 3, 1", st.Total, st.Succeeded, st.Failed, st.Finalized)
	}
	if len(recs) != 7 {
		t.Fatalf("manifest has %d records; want 7", len(recs))
	}
	r := byPrompt(recs)

	blankRec := r["blank then good"]
	if blankRec.Status != manifest.Succeeded || blankRec.Attempts != 2 {
		t.Errorf("blank then good: %s after %d attempts; want succeeded after 2", blankRec.Status, blankRec.Attempts)
	} else {
		a := blankRec.AttemptLog
		if a[0].Class != string(provider.BadOutput) || a[0].Seed == a[1].Seed || blankRec.Seed != a[1].Seed {
			t.Errorf("blank output must be retried with a new seed and recorded: %+v", a)
		}
	}
	if calls := gen.callsFor("blank then good"); len(calls) != 2 || calls[0].Seed == calls[1].Seed {
		t.Errorf("blank then good: provider saw %d calls %+v; want 2 with different seeds", len(calls), calls)
	}

	tr := r["transient then good"]
	if tr.Status != manifest.Succeeded || tr.Attempts != 2 || tr.AttemptLog[0].Seed != tr.AttemptLog[1].Seed {
		t.Errorf("transient then good: %+v; want success on the same seed", tr.AttemptLog)
	}
	if rt := r["rate then good"]; rt.Status != manifest.Succeeded || rt.AttemptLog[0].Class != string(provider.Rate) {
		t.Errorf("rate then good: %s %+v", rt.Status, rt.AttemptLog)
	}
	if in := r["bad input"]; in.Status != manifest.Failed || in.Attempts != 1 || in.ErrorClass != string(provider.Input) {
		t.Errorf("bad input: %s after %d attempts class %q; want failed after 1, class input", in.Status, in.Attempts, in.ErrorClass)
	}
	// output_retries: 2 allows 3 tries in all.
	if mod := r["always moderated"]; mod.Status != manifest.Failed || mod.Attempts != 3 || mod.ErrorClass != string(provider.Safety) {
		t.Errorf("always moderated: %s after %d attempts class %q; want failed after 3, class safety", mod.Status, mod.Attempts, mod.ErrorClass)
	}
	// max_attempts: 3.
	if te := r["transient every time"]; te.Status != manifest.Failed || te.Attempts != 3 {
		t.Errorf("transient every time: %s after %d attempts; want failed after 3", te.Status, te.Attempts)
	}
	for _, rec := range recs {
		if rec.Status != manifest.Succeeded {
			continue
		}
		data, err := b.blobs.Get(context.Background(), rec.OutputKey)
		if err != nil {
			t.Errorf("%s: output %s: %v", rec.PromptText, rec.OutputKey, err)
			continue
		}
		cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
		if err != nil || cfg.Width != 64 || cfg.Height != 64 {
			t.Errorf("%s: output decodes as %dx%d, %v; want 64x64", rec.PromptText, cfg.Width, cfg.Height, err)
		}
	}
}

// TestResubmitCallsNoProvider runs a spec, then runs it again against an
// empty Redis (as after a restart, or a second `likeness run`) with the same
// store: every output is found, nothing is paid twice.
func TestResubmitCallsNoProvider(t *testing.T) {
	t.Parallel()
	first := &scripted{}
	b1 := setup(t, first, nil)
	s := loadSpec(t, specWith("a", "b", "c"))
	st1, recs1 := b1.run(s)
	if st1.Succeeded != 3 || first.count() != 3 {
		t.Fatalf("first run: %d succeeded with %d calls; want 3 and 3", st1.Succeeded, first.count())
	}

	second := &scripted{}
	b2 := setup(t, second, b1.blobs)
	st2, recs2 := b2.run(s)
	if second.count() != 0 {
		t.Errorf("second run made %d provider calls; want 0", second.count())
	}
	if st2.Succeeded != 3 || st2.Cached != 3 {
		t.Errorf("second run: %d succeeded, %d reused; want 3 and 3", st2.Succeeded, st2.Cached)
	}
	if len(recs2) != len(recs1) {
		t.Errorf("manifest has %d records after resubmit; want %d", len(recs2), len(recs1))
	}

	// A different run (one more prompt) reuses the three outputs it shares
	// through the content-addressed cache and pays only for the new one.
	third := &scripted{}
	b3 := setup(t, third, b1.blobs)
	st3, recs3 := b3.run(loadSpec(t, specWith("a", "b", "c", "d")))
	if third.count() != 1 || st3.Succeeded != 4 {
		t.Errorf("extended run: %d calls, %d succeeded; want 1 and 4", third.count(), st3.Succeeded)
	}
	cached := 0
	for _, r := range recs3 {
		if r.Cached {
			cached++
			if r.CostUSD != 0 {
				t.Errorf("cached record %s cost %v; want 0", r.Task, r.CostUSD)
			}
		}
	}
	if cached != 3 {
		t.Errorf("extended run: %d records marked cached; want 3", cached)
	}
}

func TestCanceledRunSkipsTasks(t *testing.T) {
	t.Parallel()
	gen := &scripted{}
	b := setup(t, gen, nil)
	s := loadSpec(t, specWith("x", "y"))
	// Cancel before any worker sees the tasks: create the run first.
	if _, err := b.runs.Create(context.Background(), runstate.Run{ID: scheduler.RunID(s), Total: 2, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := b.runs.Cancel(context.Background(), scheduler.RunID(s)); err != nil {
		t.Fatal(err)
	}
	st, recs := b.run(s)
	if gen.count() != 0 || st.SkippedCanceled != 2 || st.State != runstate.Canceled {
		t.Errorf("canceled run: %d calls, %d skipped, state %s; want 0, 2, canceled", gen.count(), st.SkippedCanceled, st.State)
	}
	for _, r := range recs {
		if r.Status != manifest.SkippedCanceled {
			t.Errorf("record %s status %s; want skipped_canceled", r.Task, r.Status)
		}
	}
}
