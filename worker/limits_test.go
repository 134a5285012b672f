package worker_test

import (
	"context"
	"github.com/hibiken/asynq"
	"github.com/likeness-run/likeness/scheduler"
	"sync"
	"testing"
	"time"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/store"
)

// timed records when each provider call happened.
func (s *scripted) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.at...)
}

func TestRateAnswerMakesTheFleetWait(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	blobs, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		answered time.Time // when the first 429 was answered
	)
	wait5 := func(provider.Request) (*provider.Result, error) {
		mu.Lock()
		if answered.IsZero() {
			answered = time.Now()
		}
		mu.Unlock()
		return nil, &provider.Error{Class: provider.Rate, Provider: "sim", Status: 429, Message: "throttled", RetryAfter: 5 * time.Second}
	}
	// Two workers share one fleet; whichever calls first is told to wait 5s.
	gen := &scripted{script: map[string][]step{"p0": {wait5}, "p1": {wait5}, "p2": {wait5}, "p3": {wait5}}}
	a := setupOn(t, addr, db, gen, blobs, options{})
	setupOn(t, addr, db, gen, blobs, options{})
	st, recs := a.run(loadSpec(t, specWith("p0", "p1", "p2", "p3")))
	if st.Succeeded != 4 {
		t.Fatalf("%d succeeded; want 4 (a RATE answer is not a failure)", st.Succeeded)
	}
	// Calls already under way when the 429 came back are fine (the worker
	// that got it publishes the cooldown a few milliseconds later); every
	// call started after that, on either worker, must wait the 5s out.
	later := 0
	for _, at := range gen.times() {
		if d := at.Sub(answered); d > 100*time.Millisecond {
			later++
			if d < 5*time.Second {
				t.Errorf("a provider call %s after a 429 asking for 5s; every worker must wait", d)
			}
		}
	}
	if later < 4 {
		t.Errorf("%d calls after the 429; want every task to come back", later)
	}
	for _, r := range recs {
		if r.Attempts > 2 {
			t.Errorf("%s: %d attempts; the cooldown should leave one 429 at most per task", r.Task, r.Attempts)
		}
	}
}

func TestBillingStopsTheProviderForTheRun(t *testing.T) {
	t.Parallel()
	gen := &scripted{script: map[string][]step{"p0": {fail(provider.Billing, "Insufficient credit")}}}
	addr, db := testenv.RedisDB(t)
	b := setupOn(t, addr, db, gen, nil, options{concurrency: 1})
	st, recs := b.run(loadSpec(t, specWith("p0", "p1", "p2", "p3")))
	// With one task at a time, p0 runs first (queue order) and the rest
	// must not reach the provider.
	if gen.count() != 1 {
		t.Errorf("%d provider calls; want 1: a billing failure stops the provider for the run", gen.count())
	}
	if st.Failed != 4 {
		t.Errorf("%d failed; want 4", st.Failed)
	}
	for _, r := range recs {
		if r.ErrorClass != string(provider.Billing) {
			t.Errorf("%s: class %q; want billing", r.Task, r.ErrorClass)
		}
	}
}

func TestBudgetNeverExceededByConcurrentWorkers(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	blobs, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	gen := &scripted{}
	a := setupOn(t, addr, db, gen, blobs, options{concurrency: 6})
	setupOn(t, addr, db, gen, blobs, options{concurrency: 6})
	prompts := make([]string, 20)
	for i := range prompts {
		prompts[i] = "prompt " + string(rune('a'+i))
	}
	// sim:kontext lists at $0.04: a $0.30 budget pays for 7 outputs.
	st, recs := a.run(loadSpec(t, specWith(prompts...)+"budget_usd: 0.30\n"))
	if st.CostUSD > 0.30+1e-9 {
		t.Errorf("spent $%.2f; budget $0.30", st.CostUSD)
	}
	if st.Succeeded != 7 || st.SkippedBudget != 13 {
		t.Errorf("%d succeeded, %d skipped_budget; want 7 and 13", st.Succeeded, st.SkippedBudget)
	}
	if gen.count() != 7 {
		t.Errorf("%d provider calls; want 7", gen.count())
	}
	for _, r := range recs {
		if r.Status == manifest.SkippedBudget && r.Attempts != 0 {
			t.Errorf("%s skipped for budget after %d attempts", r.Task, r.Attempts)
		}
	}
	if st.ReservedUSD != 0 {
		t.Errorf("$%.2f still reserved after the run", st.ReservedUSD)
	}
}

func TestFleetConcurrencyCap(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	blobs, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	slow := func(req provider.Request) (*provider.Result, error) {
		time.Sleep(150 * time.Millisecond)
		return good(req)
	}
	script := map[string][]step{}
	prompts := make([]string, 12)
	for i := range prompts {
		prompts[i] = "slow " + string(rune('a'+i))
		script[prompts[i]] = []step{slow}
	}
	gen := &scripted{script: script, track: true}
	lim := map[string]ratelimit.Limit{"sim": {Concurrency: 2}}
	a := setupOn(t, addr, db, gen, blobs, options{limits: lim, concurrency: 6})
	setupOn(t, addr, db, gen, blobs, options{limits: lim, concurrency: 6})
	st, _ := a.run(loadSpec(t, specWith(prompts...)))
	if st.Succeeded != 12 {
		t.Fatalf("%d succeeded; want 12", st.Succeeded)
	}
	if m := gen.maxInFlight(); m > 2 || m == 0 {
		t.Errorf("at most %d calls in flight across two workers of 6 slots; the fleet cap is 2", m)
	}
}

type fakeTagger struct{ texts []string }

func (f *fakeTagger) Tags(_ context.Context, text string, n int) ([]string, error) {
	f.texts = append(f.texts, text)
	out := []string{"piano", "music", "portrait", "indoor"}
	return out[:min(n, len(out))], nil
}

func TestTagsUseTheRevisedPrompt(t *testing.T) {
	t.Parallel()
	revised := func(req provider.Request) (*provider.Result, error) {
		res, err := good(req)
		res.RevisedPrompt = "a woman playing a grand piano, warm light"
		return res, err
	}
	gen := &scripted{script: map[string][]step{"piano": {revised}}}
	addr, db := testenv.RedisDB(t)
	tagger := &fakeTagger{}
	b := setupOn(t, addr, db, gen, nil, options{tagger: tagger, concurrency: 1})
	_, recs := b.run(loadSpec(t, specWith("piano")+"tags: {number_of_tags: 3}\n"))
	if len(recs) != 1 || len(recs[0].Tags) != 3 || recs[0].TagsError != "" {
		t.Fatalf("records: %+v", recs)
	}
	if len(tagger.texts) != 1 || tagger.texts[0] != "a woman playing a grand piano, warm light" {
		t.Errorf("tagged %q; want the provider's revised prompt", tagger.texts)
	}
}

func TestRetryRunsFailedTasksAgain(t *testing.T) {
	t.Parallel()
	gen := &scripted{script: map[string][]step{"flaky": {fail(provider.Input, "rejected")}}}
	addr, db := testenv.RedisDB(t)
	b := setupOn(t, addr, db, gen, nil, options{})
	s := loadSpec(t, specWith("flaky", "fine"))
	st, _ := b.run(s)
	if st.Failed != 1 || st.Succeeded != 1 {
		t.Fatalf("first pass: %d failed, %d succeeded; want 1 and 1", st.Failed, st.Succeeded)
	}
	insp := asynq.NewInspector(b.redis)
	defer insp.Close()
	n, err := scheduler.Retry(context.Background(), b.queue, insp, b.runs, b.blobs, st.ID)
	if err != nil || n != 1 {
		t.Fatalf("Retry = %d, %v; want 1 task put back", n, err)
	}
	// The script is spent: the retried task now succeeds.
	st, recs := b.wait(st.ID)
	if st.Failed != 0 || st.Succeeded != 2 || st.Finalized != 1 {
		t.Errorf("after retry: %d failed, %d succeeded, finalized %d; want 0, 2, 1", st.Failed, st.Succeeded, st.Finalized)
	}
	if len(recs) != 2 {
		t.Errorf("manifest has %d records; want 2", len(recs))
	}
	for _, r := range recs {
		want := 1
		if r.PromptText == "flaky" {
			want = 2 // the failed attempt stays in the history
		}
		if r.Status != manifest.Succeeded || r.Attempts != want {
			t.Errorf("%s: %s after %d attempts; want succeeded after %d", r.PromptText, r.Status, r.Attempts, want)
		}
	}
	if n, _ := scheduler.Retry(context.Background(), b.queue, insp, b.runs, b.blobs, st.ID); n != 0 {
		t.Errorf("a second retry put back %d tasks; want 0", n)
	}
}

// TestLoneBurstThrottleStopsOnlyItsTask: one 429 asking for a second is a
// burst throttle; the other tasks go on at once.
func TestLoneBurstThrottleStopsOnlyItsTask(t *testing.T) {
	t.Parallel()
	var answered time.Time
	var mu sync.Mutex
	wait1 := func(provider.Request) (*provider.Result, error) {
		mu.Lock()
		answered = time.Now()
		mu.Unlock()
		return nil, &provider.Error{Class: provider.Rate, Provider: "sim", Status: 429, Message: "burst", RetryAfter: time.Second}
	}
	slow := func(req provider.Request) (*provider.Result, error) {
		time.Sleep(300 * time.Millisecond) // keep p1..p3 from starting before the 429
		return good(req)
	}
	gen := &scripted{script: map[string][]step{"p0": {wait1}, "p1": {slow}}}
	addr, db := testenv.RedisDB(t)
	b := setupOn(t, addr, db, gen, nil, options{concurrency: 1})
	st, _ := b.run(loadSpec(t, specWith("p0", "p1", "p2", "p3")))
	if st.Succeeded != 4 {
		t.Fatalf("%d succeeded; want 4", st.Succeeded)
	}
	soon := 0
	for _, at := range gen.times() {
		if d := at.Sub(answered); d > 0 && d < time.Second {
			soon++
		}
	}
	if soon == 0 {
		t.Error("no call within a second of a lone 1s throttle: the whole fleet waited")
	}
}
