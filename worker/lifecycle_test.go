package worker_test

// Tests of the lifecycle contract: every task ends once, is paid once and
// stays inside its budget, through faults of Redis, the object store and
// the provider.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/scheduler"
	"github.com/likeness-run/likeness/worker"
)

// paidGen behaves like an asynchronous provider that bills every request
// it accepts: a new request is created (and paid), reported through
// OnPending before the wait, and kept by id; a request resumed by id is
// answered from what was kept, at no cost. answer, when set, makes the
// output (default: a good image).
type paidGen struct {
	delay  time.Duration
	answer func(req provider.Request) (*provider.Result, error)

	mu      sync.Mutex
	creates map[string]int // by prompt
	resumes int
	kept    map[string]paidAnswer
	n       int
}

type paidAnswer struct {
	res *provider.Result
	err error
}

func (g *paidGen) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	if req.Resume != nil {
		g.mu.Lock()
		a, ok := g.kept[req.Resume.ID]
		g.resumes++
		g.mu.Unlock()
		if !ok {
			return nil, &provider.Error{Class: provider.Transient, Provider: "sim", Message: "unknown prediction", Err: provider.ErrGone}
		}
		return a.res, a.err
	}
	g.mu.Lock()
	if g.creates == nil {
		g.creates, g.kept = map[string]int{}, map[string]paidAnswer{}
	}
	g.n++
	id := fmt.Sprintf("pred-%d", g.n)
	g.creates[req.Prompt]++
	g.mu.Unlock()
	answer := g.answer
	if answer == nil {
		answer = good
	}
	res, err := answer(req)
	if res != nil {
		res.RequestID = id
	}
	g.mu.Lock()
	g.kept[id] = paidAnswer{res, err}
	g.mu.Unlock()
	if req.OnPending != nil {
		req.OnPending(provider.Pending{Provider: "sim", ID: id, CreatedAt: time.Now()})
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(g.delay):
	}
	return res, err
}

func (g *paidGen) totalCreates() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// ownRedis is a redis-server of the test's own, which it can kill and
// restart on its append-only file.
type ownRedis struct {
	t    *testing.T
	addr string
	dir  string
	cmd  *exec.Cmd
}

func startOwnRedis(t *testing.T) *ownRedis {
	t.Helper()
	testenv.Redis(t) // the test script's Redis being there means redis-server is installed
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := &ownRedis{t: t, addr: addr, dir: t.TempDir()}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *ownRedis) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "")
	r.cmd.Stdout, r.cmd.Stderr = nil, nil
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", r.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not come up", r.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *ownRedis) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

// outage is an http.RoundTripper that fails every request while down, as
// a store that went away does (connection refused).
type outage struct {
	down atomic.Bool
	seen atomic.Int64 // requests refused
}

func (o *outage) RoundTrip(req *http.Request) (*http.Response, error) {
	if o.down.Load() {
		o.seen.Add(1)
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused (test outage)")}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// newS3 returns a store on a fresh bucket of the test MinIO, whose network
// the returned outage can take away.
func newS3(t *testing.T) (*store.S3, *outage) {
	t.Helper()
	s, o, _ := newS3Pair(t)
	return s, o
}

// newS3Pair is newS3 plus a second store on the same bucket that no outage
// touches (the producer's, on another machine).
func newS3Pair(t *testing.T) (*store.S3, *outage, *store.S3) {
	t.Helper()
	env := testenv.S3(t)
	o := &outage{}
	bucket := "likeness-wt-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	bucket = strings.ToLower(bucket[:min(len(bucket), 50)] + fmt.Sprintf("-%d", time.Now().UnixNano()%1e6))
	open := func(tr http.RoundTripper) *store.S3 {
		s, err := store.NewS3(store.S3Config{Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey,
			Bucket: bucket, Transport: tr})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s, plain := open(o), open(http.DefaultTransport)
	if err := plain.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s, o, plain
}

func manyPrompts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("prompt %03d", i)
	}
	return out
}

// TestOutagesLoseNothingAndSpendNoAttempt takes the bucket away for two
// seconds and kills Redis (restarted on its append-only file) while tasks
// are working: every task succeeds on its first provider attempt, every
// provider request is paid once, and no task is counted twice.
func TestOutagesLoseNothingAndSpendNoAttempt(t *testing.T) {
	t.Parallel()
	rds := startOwnRedis(t)
	blobs, link := newS3(t)
	gen := &paidGen{delay: 400 * time.Millisecond}
	b := setupOn(t, rds.addr, 0, gen, blobs, options{concurrency: 4, infraBackoffCap: time.Second})
	const tasks = 16
	s := loadSpec(t, specWith(manyPrompts(tasks)...))
	p, err := scheduler.New(scheduler.Config{Queue: b.queue, Store: blobs, Runs: b.runs})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := p.Submit(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // tasks are at the provider
	link.down.Store(true)              // the bucket goes away
	time.Sleep(2 * time.Second)
	link.down.Store(false)
	time.Sleep(300 * time.Millisecond)
	rds.kill() // Redis dies with tasks in flight...
	time.Sleep(time.Second)
	rds.start() // ...and comes back on its AOF

	st, recs := b.waitFor(sub.RunID, 90*time.Second)
	if link.seen.Load() == 0 {
		t.Fatal("the outage refused no request: the test did not test anything")
	}
	if st.Succeeded != tasks || len(recs) != tasks {
		t.Fatalf("%d succeeded, %d records; want %d and %d", st.Succeeded, len(recs), tasks, tasks)
	}
	for _, r := range recs {
		if r.Attempts != 1 {
			t.Errorf("%s: %d attempts %+v; want 1: infrastructure faults must not spend attempts", r.PromptText, r.Attempts, r.AttemptLog)
		}
	}
	if n := gen.totalCreates(); n != tasks {
		t.Errorf("the provider created %d requests for %d tasks; want one each (resumed %d)", n, tasks, gen.resumes)
	}
	if want := float64(tasks) * 0.04; math.Abs(st.CostUSD-want) > 1e-9 {
		t.Errorf("run cost $%.2f; want $%.2f (each output paid once)", st.CostUSD, want)
	}
}

// TestInfraPastLimitEndsFailedWithRecord: a task whose store stays down
// longer than the run's infra_retry_for ends failed with class INFRA and a
// record, and the run finalizes; the provider was never called.
func TestInfraPastLimitEndsFailedWithRecord(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	blobs, link, producers := newS3Pair(t)
	gen := &paidGen{}
	link.down.Store(true) // the workers' store is away from the start
	b := setupOn(t, addr, db, gen, blobs, options{infraBackoffCap: 500 * time.Millisecond})
	s := loadSpec(t, specWith("lonely"))
	s.InfraRetryFor = 1500 * time.Millisecond // the spec's floor is a minute; a test has not got one
	p, err := scheduler.New(scheduler.Config{Queue: b.queue, Store: producers, Runs: b.runs})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := p.Submit(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	link.down.Store(false)
	st, recs := b.waitFor(sub.RunID, 60*time.Second)
	if st.Failed != 1 || len(recs) != 1 {
		t.Fatalf("%d failed, %d records; want 1 and 1", st.Failed, len(recs))
	}
	r := recs[0]
	if r.ErrorClass != string(provider.Infra) || !strings.Contains(r.Error, "infra_retry_for") {
		t.Errorf("record: class %q error %q; want class infra naming infra_retry_for", r.ErrorClass, r.Error)
	}
	if n := gen.totalCreates(); n != 0 {
		t.Errorf("the provider was called %d times; want 0", n)
	}
}

// TestBudgetHoldsWithRejectedOutputs: four workers, outputs the checks
// reject half the time; every rejected output is billed, and what the
// provider billed never passes the budget. run.json's cost is the sum of
// the records' costs.
func TestBudgetHoldsWithRejectedOutputs(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	dir, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	gen := &paidGen{delay: 20 * time.Millisecond, answer: func(req provider.Request) (*provider.Result, error) {
		if calls.Add(1)%2 == 0 {
			return blank(req)
		}
		return good(req)
	}}
	var b *bundle
	for i := range 4 {
		w := setupOn(t, addr, db, gen, dir, options{concurrency: 3})
		if i == 0 {
			b = w
		}
	}
	const budget = 0.50 // 12 outputs at $0.04
	st, recs := b.run(loadSpec(t, specWith(manyPrompts(30)...)+fmt.Sprintf("budget_usd: %.2f\n", budget)))
	billed := float64(gen.totalCreates()) * 0.04
	if billed > budget+1e-9 {
		t.Errorf("the provider billed $%.2f for %d outputs; budget $%.2f", billed, gen.totalCreates(), budget)
	}
	if math.Abs(st.CostUSD-billed) > 1e-9 {
		t.Errorf("run cost $%.2f; the provider billed $%.2f", st.CostUSD, billed)
	}
	raw, err := b.blobs.Get(t.Context(), store.SummaryKey(st.ID))
	if err != nil {
		t.Fatal(err)
	}
	sum := decodeSummary(t, raw)
	var fromRecords float64
	rejected := 0
	for _, r := range recs {
		fromRecords += r.CostUSD
		for _, a := range r.AttemptLog {
			if a.Class == string(provider.BadOutput) {
				rejected++
				if a.CostUSD != 0.04 {
					t.Errorf("%s: rejected output attempt cost $%.2f; want $0.04 (the provider billed it)", r.Task, a.CostUSD)
				}
			}
		}
	}
	if rejected == 0 {
		t.Fatal("no output was rejected: the test did not test anything")
	}
	if math.Abs(sum.CostUSD-fromRecords) > 1e-9 || math.Abs(sum.CostUSD-st.CostUSD) > 1e-9 {
		t.Errorf("run.json cost $%.4f, records sum $%.4f, Redis $%.4f; want all equal", sum.CostUSD, fromRecords, st.CostUSD)
	}
	if st.ReservedUSD != 0 {
		t.Errorf("$%.2f still reserved after the run", st.ReservedUSD)
	}
}

// TestResubmitRedoesFailedAndSkipped: submitting the same spec again, with
// a larger budget, reuses what succeeded and redoes what failed or was
// skipped.
func TestResubmitRedoesFailedAndSkipped(t *testing.T) {
	t.Parallel()
	gen := &scripted{script: map[string][]step{"flaky": {fail(provider.Input, "rejected once")}}}
	addr, db := testenv.RedisDB(t)
	b := setupOn(t, addr, db, gen, nil, options{concurrency: 1}) // tasks in queue order: flaky first
	prompts := append([]string{"flaky"}, manyPrompts(5)...)
	// $0.12 pays for three outputs (the failure costs nothing).
	st, _ := b.run(loadSpec(t, specWith(prompts...)+"budget_usd: 0.12\n"))
	if st.Failed != 1 || st.Succeeded != 3 || st.SkippedBudget != 2 {
		t.Fatalf("first run: %d failed, %d succeeded, %d skipped; want 1, 3, 2", st.Failed, st.Succeeded, st.SkippedBudget)
	}
	callsBefore := gen.count()
	st2, recs := b.run(loadSpec(t, specWith(prompts...)+"budget_usd: 1.00\n"))
	if st2.ID != st.ID {
		t.Fatalf("resubmission got run %s; want the same run %s", st2.ID, st.ID)
	}
	if st2.Succeeded != 6 || st2.Failed != 0 || st2.SkippedBudget != 0 || len(recs) != 6 {
		t.Errorf("after resubmitting: %d succeeded, %d failed, %d skipped, %d records; want 6, 0, 0, 6",
			st2.Succeeded, st2.Failed, st2.SkippedBudget, len(recs))
	}
	if n := gen.count() - callsBefore; n != 3 {
		t.Errorf("the resubmission made %d provider calls; want 3 (the failed and the two skipped tasks)", n)
	}
	if st2.BudgetUSD != 1.00 {
		t.Errorf("budget after resubmitting $%.2f; want $1.00", st2.BudgetUSD)
	}
}

// TestRetryBringsBackEveryFailedTask: 1,200 tasks fail (a billing stop
// fails the rest of the run once the first 402 comes back); retry lifts the
// stop before it puts every one back, found in the run's own state, and each
// finalization sends its own webhook.
func TestRetryBringsBackEveryFailedTask(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	failing.Store(true)
	gen := &paidGen{answer: func(req provider.Request) (*provider.Result, error) {
		if failing.Load() {
			return nil, &provider.Error{Class: provider.Billing, Provider: "sim", Status: 402, Message: "out of credit"}
		}
		return good(req)
	}}
	var mu sync.Mutex
	hooks := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hooks[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	addr, db := testenv.RedisDB(t)
	b := setupOn(t, addr, db, gen, nil, options{concurrency: 16, webhook: worker.Webhook{URL: srv.URL}})
	const tasks = 1200
	st, _ := b.run(loadSpec(t, specWith(manyPrompts(12)...)+"variants: 100\n"))
	if st.Total != tasks || st.Failed != tasks {
		t.Fatalf("first pass: %d of %d failed; want all", st.Failed, st.Total)
	}
	failing.Store(false) // the account was topped up
	insp := asynq.NewInspector(b.redis)
	defer insp.Close()
	n, err := scheduler.Retry(t.Context(), b.queue, insp, b.runs, b.blobs, st.ID)
	if err != nil || n != tasks {
		t.Fatalf("Retry = %d, %v; want all %d back", n, err, tasks)
	}
	st, recs := b.waitFor(st.ID, 120*time.Second)
	if st.Succeeded != tasks || len(recs) != tasks {
		t.Errorf("after retry: %d succeeded, %d records; want %d and %d", st.Succeeded, len(recs), tasks, tasks)
	}
	if st.Finalizations != 2 {
		t.Errorf("finalizations %d; want 2", st.Finalizations)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		got := len(hooks)
		mu.Unlock()
		if got == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook deliveries by id: %v; want one for each of 2 finalizations", hooks)
		}
	}
	for _, id := range []string{"notify:" + st.ID + ":1", "notify:" + st.ID + ":2"} {
		if hooks[id] == 0 {
			t.Errorf("no webhook %s; got %v", id, hooks)
		}
	}
}

func decodeSummary(t *testing.T, raw []byte) manifest.Summary {
	t.Helper()
	var sum manifest.Summary
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatalf("run.json: %v", err)
	}
	return sum
}

// TestRedeliveryResumesThePaidRequest: a worker shut down while a request
// is at the provider leaves it to the fleet; the next delivery resumes the
// request it paid for instead of creating another.
func TestRedeliveryResumesThePaidRequest(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	dir, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	gen := &paidGen{delay: 3 * time.Second}
	first := setupOn(t, addr, db, gen, dir, options{shutdownTimeout: 100 * time.Millisecond})
	p, err := scheduler.New(scheduler.Config{Queue: first.queue, Store: dir, Runs: first.runs})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := p.Submit(t.Context(), loadSpec(t, specWith("slow one")))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); gen.totalCreates() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the provider")
		}
	}
	first.worker.Shutdown() // its task goes back to the queue, the request stays open
	second := setupOn(t, addr, db, gen, dir, options{})
	st, recs := second.waitFor(sub.RunID, 30*time.Second)
	if st.Succeeded != 1 || len(recs) != 1 {
		t.Fatalf("%d succeeded; want 1", st.Succeeded)
	}
	if n := gen.totalCreates(); n != 1 || gen.resumes != 1 {
		t.Errorf("the provider saw %d creates and %d resumes; want 1 and 1", n, gen.resumes)
	}
	if r := recs[0]; r.Attempts != 1 || r.ProviderRequestID != "pred-1" || r.CostUSD != 0.04 {
		t.Errorf("record: %d attempts, request %q, cost $%.2f; want 1, pred-1, $0.04", r.Attempts, r.ProviderRequestID, r.CostUSD)
	}
}

// TestSystematicCheckFailureStopsPaying: a model that returns another
// aspect than asked for every seed is not paid output_retries times.
func TestSystematicCheckFailureStopsPaying(t *testing.T) {
	t.Parallel()
	wide := func(req provider.Request) (*provider.Result, error) {
		r, err := good(provider.Request{Width: req.Width * 2, Height: req.Height, Seed: req.Seed})
		return r, err
	}
	gen := &scripted{script: map[string][]step{"always wide": {wide, wide, wide, wide}}}
	b := setup(t, gen, nil)
	st, recs := b.run(loadSpec(t, specWith("always wide")))
	if st.Failed != 1 {
		t.Fatalf("%d failed; want 1", st.Failed)
	}
	r := recs[0]
	if n := len(gen.callsFor("always wide")); n != 2 {
		t.Errorf("%d provider calls; want 2 (the second identical check failure ends the task)", n)
	}
	if r.ErrorClass != string(provider.BadOutput) || !strings.Contains(r.Error, "two seeds") || r.CostUSD != 0.08 {
		t.Errorf("record: class %q, cost $%.2f, error %q", r.ErrorClass, r.CostUSD, r.Error)
	}
	// run.json (and the report) say what the model can return.
	raw, err := b.blobs.Get(t.Context(), store.SummaryKey(st.ID))
	if err != nil {
		t.Fatal(err)
	}
	if sum := decodeSummary(t, raw); len(sum.Models) != 1 || !strings.Contains(sum.Models[0].Returns, "checked to the pixel") {
		t.Errorf("run.json models %+v; want what sim:kontext returns", sum.Models)
	}
}

// unreadable answers like a provider whose API is down after it accepted
// the request: the poll fails, the request lives on.
type unreadable struct {
	*paidGen
	failures atomic.Int64
}

func (u *unreadable) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	res, err := u.paidGen.Generate(ctx, req)
	if err == nil && u.failures.Add(-1) >= 0 {
		return nil, provider.StillPending(&provider.Error{Class: provider.Transient, Provider: "sim", Status: 503, Message: "poll: service unavailable"})
	}
	return res, err
}

// TestUnreadableRequestStaysOpen: polls of a paid request that the
// provider does not answer spend no attempt and create nothing new; the
// request is read again later.
func TestUnreadableRequestStaysOpen(t *testing.T) {
	t.Parallel()
	gen := &unreadable{paidGen: &paidGen{}}
	gen.failures.Store(2)
	b := setup(t, gen, nil)
	st, recs := b.run(loadSpec(t, specWith("api down after accept")))
	if st.Succeeded != 1 || recs[0].Attempts != 1 {
		t.Fatalf("%d succeeded after %d attempts; want 1 after 1", st.Succeeded, recs[0].Attempts)
	}
	if n := gen.totalCreates(); n != 1 || gen.resumes != 2 {
		t.Errorf("%d creates, %d resumes; want 1 and 2", n, gen.resumes)
	}
}
