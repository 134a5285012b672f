package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/dashboard"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/sim"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/worker"
)

// chromiumPath is Debian's chromium, which scripts/test.sh installs. The
// tests never download a browser.
const chromiumPath = "/usr/bin/chromium"

// countingSim is the simulator with counters of the calls it was asked to
// make, so a test can tell whether a paused run still calls its provider.
type countingSim struct {
	sim      provider.Generator
	started  atomic.Int64
	inFlight atomic.Int64
}

func (c *countingSim) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	c.started.Add(1)
	c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	return c.sim.Generate(ctx, req)
}

// browser starts a headless chromium for the test and returns its context.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		msg := "needs Debian's chromium at " + chromiumPath + ": run scripts/test.sh, which installs it"
		if testenv.RequireInfra() {
			t.Fatalf("%s (%s=1 forbids skipping)", msg, testenv.RequireInfraVar)
		}
		t.Skip(msg)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser: it must not run under a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs browser actions with a deadline.
func run(t *testing.T, ctx context.Context, timeout time.Duration, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
		html, _ := chromedp.Run(hctx, chromedp.OuterHTML(chromedp.CSS("main")))
		hcancel()
		if len(html) > 4000 {
			html = html[:4000]
		}
		t.Fatalf("%s: %v\npage:\n%s", what, err, html)
	}
}

// until waits for a JavaScript expression to be true in the page.
func until(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(time.Minute))
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot saves the page when LIKENESS_SCREENSHOTS names a directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("LIKENESS_SCREENSHOTS")
	if dir == "" {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", filepath.Join(dir, name))
}

var servingRE = regexp.MustCompile(`"msg":"serving","addr":"([^"]+)"`)

// serveURL waits for `likeness serve` to log the address it listens on.
func serveURL(t *testing.T, p *proc) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := servingRE.FindStringSubmatch(p.errOut()); m != nil {
			return "http://" + m[1]
		}
		select {
		case <-p.done:
			t.Fatalf("serve exited: %v\n%s", p.err, p.errOut())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", p.errOut())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDashboardBrowser drives the dashboard in a real browser against a
// real distributed run: Redis, MinIO, `likeness submit` and `likeness
// serve` as processes, a worker working the simulator in-process.
func TestDashboardBrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	c := newCluster(t)
	const token = "browser-test-token"
	base := serveURL(t, start(t, append(c.env, "LIKENESS_DASHBOARD_TOKEN="+token), "serve", "--addr", "127.0.0.1:0"))

	s, err := sim.New(sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	calls := &countingSim{sim: s}
	w, err := worker.New(worker.Config{
		Redis: c.redis, Store: c.bucket, Runs: c.runs, Generators: map[string]provider.Generator{"sim": calls},
		Limiter: ratelimit.New(c.rdb, ratelimit.Config{}), Concurrency: 2, PollInterval: 100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	submit := func(spec string) string {
		t.Helper()
		code, stdout, stderr := likeness(t, c.env, "submit", writeSpec(t, spec))
		if code != 0 {
			t.Fatalf("submit: exit %d\n%s", code, stderr)
		}
		return strings.TrimSpace(stdout)
	}
	state := func(id string) *runstate.Status {
		t.Helper()
		st, err := c.runs.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	// Run A: 36 tasks of 800ms, two at a time: about 15s unless canceled,
	// long enough to still run when the browser cancels it.
	runA := submit(strings.Replace(distSpec("browser-cancel", 800), "variants: 2", "variants: 3", 1))
	// The runs list follows the run by itself.
	rowDone := fmt.Sprintf(`Number((document.querySelector('tr[data-run=%q] progress') || {}).value || 0)`, runA)
	run(t, ctx, 20*time.Second, "runs list",
		chromedp.Navigate(base+"/"),
		until(rowDone+` >= 0 && document.querySelector('tr[data-run=`+fmt.Sprintf("%q", runA)+`]') !== null`),
		chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`),
	)
	listed := eval[int](t, ctx, rowDone)
	run(t, ctx, 20*time.Second, "runs list advances",
		until(fmt.Sprintf(`window.__sameDocument === true && %s > %d`, rowDone, listed)))
	run(t, ctx, 20*time.Second, "open run A",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-run=%q] a`, runA))),
		chromedp.WaitVisible(chromedp.CSS("#progress")),
		chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`),
	)
	first := eval[int](t, ctx, `Number(document.getElementById("done-count").textContent)`)
	// The progress advances without a reload.
	run(t, ctx, 20*time.Second, "progress advances",
		until(fmt.Sprintf(`window.__sameDocument === true && Number(document.getElementById("done-count").textContent) >= %d`, first+2)))
	// The gallery's images load, the reference beside them.
	run(t, ctx, 20*time.Second, "gallery images load",
		until(`[...document.querySelectorAll("#gallery img.output")].filter(i => i.complete && i.naturalWidth > 0).length >= 2`),
		until(`[...document.querySelectorAll("#gallery img.reference")].some(i => i.complete && i.naturalWidth > 0)`),
	)
	// An image opens with its record.
	run(t, ctx, 10*time.Second, "open a record",
		chromedp.Click(chromedp.CSS("#gallery figure[data-status=succeeded]")),
		until(`document.getElementById("record").open && /seed/.test(document.getElementById("record-fields").textContent) && document.querySelectorAll("#record-attempts tbody tr").length >= 1`),
		chromedp.Click(chromedp.CSS("#record .close button")),
		until(`!document.getElementById("record").open`),
	)
	screenshot(t, ctx, "dashboard-run.png")

	// Cancel without the token is refused, and the run goes on.
	run(t, ctx, 10*time.Second, "cancel without the token",
		chromedp.Click(chromedp.CSS("#btn-cancel")),
		until(`/log in/.test(document.getElementById("action-msg").textContent) && document.getElementById("action-login") !== null`),
	)
	if canceled, _ := c.runs.Canceled(context.Background(), runA); canceled {
		t.Fatal("cancel without the token canceled the run")
	}
	// A wrong token is refused at the login form.
	run(t, ctx, 10*time.Second, "wrong login",
		chromedp.Navigate(base+"/login?next=/runs/"+runA),
		chromedp.SendKeys(chromedp.CSS("#token"), "not-the-token"),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#login-error")),
	)
	// With it, cancel ends the run as canceled.
	run(t, ctx, 20*time.Second, "log in and cancel",
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login-submit")),
		chromedp.WaitVisible(chromedp.CSS("#signed-in")),
		until(`!document.getElementById("btn-cancel").hidden && document.getElementById("run-state").dataset.state === "running"`),
		chromedp.Click(chromedp.CSS("#btn-cancel")),
		until(`document.getElementById("run-state").dataset.state === "canceled"`),
	)
	stA := state(runA)
	if stA.State != runstate.Canceled || stA.SkippedCanceled == 0 || stA.Succeeded == 0 || stA.Succeeded >= 36 {
		t.Errorf("run A after cancel: state %s, %d succeeded, %d skipped canceled; want canceled part-way", stA.State, stA.Succeeded, stA.SkippedCanceled)
	}

	// Run B: pause stops new provider calls; resume finishes the run.
	runB := submit(distSpec("browser-pause", 600)) // about 7s of work
	run(t, ctx, 20*time.Second, "open run B and pause",
		chromedp.Navigate(base+"/runs/"+runB),
		until(`Number(document.getElementById("done-count").textContent) >= 2 && !document.getElementById("btn-pause").hidden`),
		chromedp.Click(chromedp.CSS("#btn-pause")),
		until(`document.getElementById("run-state").dataset.state === "paused" && !document.getElementById("btn-resume").hidden`),
	)
	// Calls in flight finish; after them, none starts while paused.
	time.Sleep(300 * time.Millisecond) // tasks past the paused check before it was set
	deadline := time.Now().Add(10 * time.Second)
	for calls.inFlight.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("provider calls still in flight 10s after pausing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Finished calls settle (image, record, count) just after they return.
	doneBefore := state(runB).Done()
	for {
		time.Sleep(300 * time.Millisecond)
		d := state(runB).Done()
		if d == doneBefore {
			break
		}
		doneBefore = d
	}
	before := calls.started.Load()
	time.Sleep(2500 * time.Millisecond) // longer than a paused task's requeue wait
	if after := calls.started.Load(); after != before {
		t.Errorf("paused run: provider calls went from %d to %d", before, after)
	}
	if st := state(runB); st.Done() != doneBefore || st.Complete() {
		t.Errorf("paused run: done went from %d to %d", doneBefore, st.Done())
	}
	screenshot(t, ctx, "dashboard-paused.png")
	run(t, ctx, 40*time.Second, "resume and finish",
		chromedp.Click(chromedp.CSS("#btn-resume")),
		until(`document.getElementById("run-state").dataset.state === "done"`),
		until(`Number(document.getElementById("succeeded-count").textContent) === 24 && !document.getElementById("report-link").hidden`),
	)
	stB := state(runB)
	if stB.Succeeded != 24 || stB.State != runstate.Done || calls.started.Load() <= before {
		t.Errorf("run B after resume: %+v, %d calls", stB, calls.started.Load())
	}
	// Pausing spent no attempt: every task took exactly one.
	raw, err := c.bucket.Get(context.Background(), "runs/"+runB+"/manifest.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := manifest.ReadJSONL(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Attempts != 1 {
			t.Errorf("task %s took %d attempts; pausing must not spend any", r.Task, r.Attempts)
		}
	}
	screenshot(t, ctx, "dashboard-done.png")
}

// TestServeRefusesBeyondLoopbackWithoutToken checks serve's and run
// --serve's guard: no token, no listening beyond loopback (exit 2).
func TestServeRefusesBeyondLoopbackWithoutToken(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"serve", "--addr", "0.0.0.0:0"},
		{"serve", "--addr", ":0"},
		{"run", "--serve", "0.0.0.0:0", "--out", t.TempDir(), filepath.Join("..", "..", "examples", "quickstart.yaml")},
	} {
		code, _, stderr := likeness(t, []string{"LIKENESS_DASHBOARD_TOKEN=", "LIKENESS_REDIS_URL=redis://127.0.0.1:1/0", "LIKENESS_S3_ENDPOINT="}, args...)
		if code != exitInput || !strings.Contains(stderr, "LIKENESS_DASHBOARD_TOKEN") || !strings.Contains(stderr, "beyond loopback") {
			t.Errorf("%v: exit %d; want %d with a clear message\n%s", args, code, exitInput, stderr)
		}
	}
}

// TestPauseResumeCommands pauses and resumes a run from the CLI.
func TestPauseResumeCommands(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	if _, err := c.runs.Create(ctx, runstate.Run{ID: "cli-pause", Name: "p", Total: 1, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := likeness(t, c.env, "pause", "cli-pause")
	if p, _ := c.runs.Paused(ctx, "cli-pause"); code != 0 || !p || !strings.Contains(stdout, "paused") {
		t.Errorf("pause: exit %d, paused %v\n%s%s", code, p, stdout, stderr)
	}
	code, stdout, stderr = likeness(t, c.env, "resume", "cli-pause")
	if p, _ := c.runs.Paused(ctx, "cli-pause"); code != 0 || p || !strings.Contains(stdout, "resumed") {
		t.Errorf("resume: exit %d, paused %v\n%s%s", code, p, stdout, stderr)
	}
	code, _, stderr = likeness(t, c.env, "pause", "no-such-run")
	if code != exitInput || !strings.Contains(stderr, "not found") {
		t.Errorf("pause of an unknown run: exit %d\n%s", code, stderr)
	}
	if _, err := c.runs.Get(ctx, "no-such-run"); !errors.Is(err, runstate.ErrNotFound) {
		t.Errorf("pausing an unknown run created it: %v", err)
	}
}

var dashboardLineRE = regexp.MustCompile(`dashboard: (http://\S+)/runs/(\S+)`)

// TestRunServeEmbedded follows an embedded-mode run (in-process Redis and a
// local directory) through `run --serve` while it works.
func TestRunServeEmbedded(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	p := start(t, []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT=", "LIKENESS_DASHBOARD_TOKEN="},
		"run", writeSpec(t, distSpec("embedded-serve", 300)), "--out", out, "--no-progress", "--concurrency", "2", "--serve", "127.0.0.1:0")
	var base, runID string
	deadline := time.Now().Add(30 * time.Second)
	for base == "" {
		if m := dashboardLineRE.FindStringSubmatch(p.errOut()); m != nil {
			base, runID = m[1], m[2]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run --serve printed no dashboard address:\n%s", p.errOut())
		}
		time.Sleep(20 * time.Millisecond)
	}
	getJSON := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s while the run works: %v", path, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var d dashboard.Detail
	var g dashboard.Gallery
	for {
		getJSON("/api/runs/"+runID+"/detail", &d)
		getJSON("/api/runs/"+runID+"/gallery", &g)
		if d.Run.Done >= 2 && len(g.Items) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress seen through the dashboard: %+v", d.Run)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d.Run.Total != 24 || d.Run.Finalized || len(d.Queues) != 1 || d.Queues[0].Error != "" || len(d.Limits) == 0 || d.Limits[0].Error != "" {
		t.Errorf("embedded run mid-way: %+v, queues %+v, limits %+v", d.Run, d.Queues, d.Limits)
	}
	resp, err := http.Get(base + g.Items[0].Image)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, _, err := image.DecodeConfig(bytes.NewReader(img)); resp.StatusCode != 200 || err != nil {
		t.Errorf("image %s: %d, %v", g.Items[0].Image, resp.StatusCode, err)
	}
	// Actions are off without a token.
	resp, err = http.Post(base+"/api/runs/"+runID+"/cancel", "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cancel without a token: %d; want 403", resp.StatusCode)
	}
	if code := p.wait(t, time.Minute); code != 0 {
		t.Errorf("run exited %d\n%s", code, p.errOut())
	}
}
