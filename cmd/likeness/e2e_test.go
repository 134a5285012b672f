package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/redisconn"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

// binPath is the likeness binary built once for the process-level tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "likeness-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "likeness")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build likeness:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a likeness process with its output captured for diagnostics.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan struct{}
	err    error
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binPath, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = lockedWriter{&p.mu, &p.stdout}
	p.cmd.Stderr = lockedWriter{&p.mu, &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("likeness %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), p.out(), p.errOut())
		}
	})
	return p
}

func (p *proc) out() string    { p.mu.Lock(); defer p.mu.Unlock(); return p.stdout.String() }
func (p *proc) errOut() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.String() }

// wait returns the exit code, failing the test after timeout.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("likeness %v still running after %s\nstderr:\n%s", p.cmd.Args[1:], timeout, p.errOut())
	}
	return p.cmd.ProcessState.ExitCode()
}

// likeness runs one command to completion.
func likeness(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, env, args...)
	code = p.wait(t, 3*time.Minute)
	return code, p.out(), p.errOut()
}

// cluster is a test's share of the real Redis and MinIO: a Redis database
// and a bucket of its own, and the env that points likeness at them.
type cluster struct {
	env    []string
	rdb    redis.UniversalClient
	redis  asynq.RedisConnOpt
	bucket *store.S3
	runs   *runstate.Store
}

var bucketSeq struct {
	sync.Mutex
	n int
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	addr, db := testenv.RedisDB(t)
	return newClusterOn(t, fmt.Sprintf("redis://%s/%d", addr, db))
}

// newClusterOn is a cluster on the Redis that redisURL (any
// LIKENESS_REDIS_URL form) names, with a bucket of its own.
func newClusterOn(t *testing.T, redisURL string) *cluster {
	t.Helper()
	ropt, err := redisconn.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	s3env := testenv.S3(t)
	bucketSeq.Lock()
	bucketSeq.n++
	name := fmt.Sprintf("e2e-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6, bucketSeq.n)
	bucketSeq.Unlock()
	bucket, err := store.NewS3(store.S3Config{Endpoint: s3env.Endpoint, AccessKey: s3env.AccessKey, SecretKey: s3env.SecretKey, Bucket: name})
	if err != nil {
		t.Fatal(err)
	}
	rdb := ropt.Client()
	t.Cleanup(func() { rdb.Close() })
	return &cluster{
		env: []string{
			"LIKENESS_REDIS_URL=" + redisURL,
			"LIKENESS_S3_ENDPOINT=" + s3env.Endpoint,
			"LIKENESS_S3_ACCESS_KEY=" + s3env.AccessKey,
			"LIKENESS_S3_SECRET_KEY=" + s3env.SecretKey,
			"LIKENESS_S3_BUCKET=" + name,
			"LIKENESS_LOG_LEVEL=info",
		},
		rdb:    rdb,
		redis:  ropt.Asynq(),
		bucket: bucket,
		runs:   runstate.New(rdb, runstate.Config{}),
	}
}

// writeSpec writes a spec beside copies of the example references.
func writeSpec(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "refs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mara.png", "theo.png"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "examples", "refs", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "refs", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "spec.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// distSpec is 3 characters × 2 prompts × 2 models × 2 variants = 24 tasks.
func distSpec(name string, latencyMS int) string {
	return fmt.Sprintf(`version: 1
name: %s
characters:
  - {id: mara, reference: refs/mara.png}
  - {id: theo, reference: refs/theo.png}
  - {id: mara2, reference: refs/mara.png}
prompts:
  - {id: piano, text: "playing the piano"}
  - {id: rain, text: "walking in the rain"}
models:
  - {id: kontext, model: "sim:kontext", params: {size: 128, latency_ms: %d}}
  - {id: seededit, model: "sim:seededit", params: {size: 128, aspect_ratio: "3:4", latency_ms: %d}}
variants: 2
seed: 11
`, name, latencyMS, latencyMS)
}

// waitFinalized polls Redis until the run is complete and finalized.
func (c *cluster) waitFinalized(t *testing.T, run string, timeout time.Duration) *runstate.Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := c.runs.Get(context.Background(), run)
		if err == nil && st.Complete() && st.Finalized > 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s not finalized after %s: %+v, %v", run, timeout, st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readManifest(t *testing.T, get func(string) ([]byte, error), run string) []manifest.Record {
	t.Helper()
	raw, err := get(store.ManifestKey(run))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := manifest.ReadJSONL(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// checkOnce asserts the manifest has each of want tasks exactly once, all
// succeeded, and that the bucket holds exactly one output per task, each
// decoding as an image.
func (c *cluster) checkOnce(t *testing.T, run string, want int) []manifest.Record {
	t.Helper()
	ctx := context.Background()
	recs := readManifest(t, func(k string) ([]byte, error) { return c.bucket.Get(ctx, k) }, run)
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.Task] {
			t.Errorf("task %s appears twice in the manifest", r.Task)
		}
		seen[r.Task] = true
		if r.Status != manifest.Succeeded {
			t.Errorf("task %s: %s (%s)", r.Task, r.Status, r.Error)
		}
	}
	if len(recs) != want || len(seen) != want {
		t.Errorf("manifest: %d records, %d unique tasks; want %d", len(recs), len(seen), want)
	}
	outs, err := c.bucket.List(ctx, store.RunPrefix(run)+"outputs/")
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != want {
		t.Errorf("bucket holds %d outputs; want %d", len(outs), want)
	}
	for _, o := range outs {
		data, err := c.bucket.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := image.DecodeConfig(bytes.NewReader(data)); err != nil {
			t.Errorf("output %s does not decode: %v", o.Key, err)
		}
	}
	return recs
}

func TestQuickstartEmbedded(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	code, stdout, stderr := likeness(t, []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT="},
		"run", filepath.Join("..", "..", "examples", "quickstart.yaml"), "--out", out, "--no-progress")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	runs, _ := filepath.Glob(filepath.Join(out, "runs", "*"))
	if len(runs) != 1 {
		t.Fatalf("want one run directory, got %v", runs)
	}
	runDir := runs[0]
	recs := readManifest(t, func(k string) ([]byte, error) { return os.ReadFile(filepath.Join(out, k)) }, filepath.Base(runDir))
	if len(recs) != 48 {
		t.Fatalf("manifest has %d records; want 48", len(recs))
	}
	for _, r := range recs {
		f, err := os.Open(filepath.Join(out, r.OutputKey))
		if err != nil {
			t.Fatalf("%s: %v", r.Task, err)
		}
		cfg, _, err := image.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width != r.Width || cfg.Height != r.Height {
			t.Errorf("%s: output %dx%d (%v); record says %dx%d", r.OutputKey, cfg.Width, cfg.Height, err, r.Width, r.Height)
		}
	}
	var sum manifest.Summary
	raw, err := os.ReadFile(filepath.Join(runDir, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &sum); err != nil || sum.Succeeded != 48 || len(sum.Models) != 3 {
		t.Errorf("run.json: %+v, %v", sum, err)
	}
	// Every image the report's pages show exists on disk, relative to its
	// page; the pages show every output and a reference per prompt.
	srcs := 0
	for page, html := range reportPages(t, runDir) {
		for _, m := range regexp.MustCompile(`<img[^>]+src="([^"]+)"`).FindAllStringSubmatch(html, -1) {
			srcs++
			if _, err := os.Stat(filepath.Join(filepath.Dir(page), filepath.FromSlash(m[1]))); err != nil {
				t.Errorf("%s: image %s: %v", page, m[1], err)
			}
		}
	}
	if srcs < 48+8 {
		t.Errorf("report shows %d images; want the 48 outputs and a reference per prompt", srcs)
	}
	for _, c := range []string{"mara", "theo"} {
		if _, err := os.Stat(filepath.Join(runDir, "sheets", c+".png")); err != nil {
			t.Errorf("character sheet of %s: %v", c, err)
		}
	}
	if !strings.Contains(stdout, "48 succeeded") || !strings.Contains(stdout, "report.") && !strings.Contains(stdout, "index.html") {
		t.Errorf("the result lines do not say where the outputs are:\n%s", stdout)
	}

	// Running it again reuses every output: no provider call.
	code, stdout, _ = likeness(t, []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT="},
		"run", filepath.Join("..", "..", "examples", "quickstart.yaml"), "--out", out, "--no-progress")
	if code != 0 || !strings.Contains(stdout, "(48 reused)") {
		t.Errorf("second run: exit %d\n%s", code, stdout)
	}
}

func TestDistributedEndToEnd(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	specPath := writeSpec(t, distSpec("dist", 150))
	code, stdout, stderr := likeness(t, c.env, "submit", specPath)
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, stderr)
	}
	run := strings.TrimSpace(stdout)
	w1 := start(t, c.env, "worker", "--concurrency", "4")
	w2 := start(t, c.env, "worker", "--concurrency", "4")
	st := c.waitFinalized(t, run, 2*time.Minute)
	if st.Succeeded != 24 || st.Finalized != 1 {
		t.Errorf("status: %d succeeded, finalized %d times; want 24 and 1", st.Succeeded, st.Finalized)
	}
	recs := c.checkOnce(t, run, 24)
	calls := 0
	workers := map[string]int{}
	for _, r := range recs {
		calls += r.Attempts
		workers[r.Worker]++
	}
	if len(workers) != 2 {
		t.Errorf("tasks by worker: %v; want both workers to take part", workers)
	}
	stopGracefully(t, w1, w2)

	// The same spec again: same run id, nothing enqueued, nothing paid.
	code, stdout, stderr = likeness(t, c.env, "submit", specPath)
	if code != 0 || strings.TrimSpace(stdout) != run || !strings.Contains(stderr, "was submitted before") {
		t.Errorf("resubmit: exit %d, run %q (want %q)\n%s", code, stdout, run, stderr)
	}
	insp := asynq.NewInspector(c.redis)
	defer insp.Close()
	queues, _ := insp.Queues()
	for _, q := range queues {
		info, err := insp.GetQueueInfo(q)
		if err == nil && info.Pending+info.Scheduled+info.Retry+info.Active > 0 {
			t.Errorf("queue %s has work after a resubmit: %+v", q, info)
		}
	}
	after := 0
	for _, r := range c.checkOnce(t, run, 24) {
		after += r.Attempts
	}
	if after != calls {
		t.Errorf("provider attempts went from %d to %d after resubmitting", calls, after)
	}

	code, stdout, _ = likeness(t, c.env, "status", run, "--json")
	var sj runStatusJSON
	if code != 0 || json.Unmarshal([]byte(stdout), &sj) != nil || sj.Succeeded != 24 || !sj.Finalized {
		t.Errorf("status --json: exit %d: %s", code, stdout)
	}
}

func TestWorkerKilledMidRun(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	specPath := writeSpec(t, distSpec("kill", 1500))
	code, stdout, stderr := likeness(t, c.env, "submit", specPath)
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, stderr)
	}
	run := strings.TrimSpace(stdout)
	victim := start(t, c.env, "worker", "--concurrency", "6")
	// Let the victim take tasks and finish a few, then kill it without a
	// chance to requeue anything.
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := c.runs.Get(context.Background(), run)
		if err == nil && st.Done() >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("victim finished nothing in a minute:\n%s", victim.errOut())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.wait(t, 10*time.Second)
	killedAt := time.Now()
	st, _ := c.runs.Get(context.Background(), run)
	if st.Done() >= 24 {
		t.Fatalf("the victim finished the whole run before it was killed")
	}
	// A survivor works the rest. asynq would hand the victim's tasks back
	// one to two minutes after its lease expired; the fleet's rescue finds
	// them unclaimed once their claims lapse (6 s) and, 3 s later, enqueues
	// them again.
	start(t, c.env, "worker", "--concurrency", "6")
	c.waitFinalized(t, run, 40*time.Second)
	t.Logf("run finalized %s after the kill", time.Since(killedAt).Round(100*time.Millisecond))
	c.checkOnce(t, run, 24)
}

// stopGracefully sends SIGTERM to each worker and checks that it exits 0.
func stopGracefully(t *testing.T, workers ...*proc) {
	t.Helper()
	for i, w := range workers {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		if code := w.wait(t, time.Minute); code != 0 {
			t.Errorf("worker %d exited %d after SIGTERM", i+1, code)
		}
	}
}

func TestBadSpecsExitTwoAndTouchNothing(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	base := "version: 1\nname: bad\ncharacters:\n  - {id: mara, reference: refs/mara.png}\nprompts:\n  - {id: p, text: hello}\nmodels:\n  - {id: m, model: \"sim:kontext\"}\n"
	cases := []struct {
		name string
		body string
		want string // a substring of stderr, with file:line
	}{
		{"syntax", "version: 1\nname: x\n\tbad: 1\n", "spec.yaml:2: invalid YAML"},
		{"unknown provider", strings.Replace(base, "sim:kontext", "repliate:black-forest-labs/flux-kontext-pro", 1), `spec.yaml:8: models[0].model: unknown provider "repliate"`},
		{"unknown model", strings.Replace(base, "sim:kontext", "sim:nope", 1), `spec.yaml:8: models[0].model: unknown model "sim:nope"`},
		{"path traversal id", strings.Replace(base, "id: mara", "id: ../evil", 1), "spec.yaml:4: characters[0].id"},
		{"missing reference", strings.Replace(base, "refs/mara.png", "refs/nobody.png", 1), "spec.yaml:4: characters[0].reference"},
		{"non-image reference", strings.Replace(base, "refs/mara.png", "spec.yaml", 1), "spec.yaml:4: characters[0].reference"},
		{"negative variants", base + "variants: -1\n", "spec.yaml:9: variants"},
		{"empty prompt", strings.Replace(base, "text: hello", `text: "  "`, 1), "spec.yaml:6: prompts[0].text"},
		{"no prompts", strings.Replace(base, "prompts:\n  - {id: p, text: hello}\n", "prompts: []\n", 1), "spec.yaml:5: prompts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeSpec(t, tc.body)
			code, stdout, stderr := likeness(t, c.env, "submit", path)
			if code != exitInput {
				t.Errorf("exit %d; want %d\n%s", code, exitInput, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr does not contain %q:\n%s", tc.want, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q; want nothing (no run id)", stdout)
			}
		})
	}
	// The embedded mode rejects the same way, before creating anything.
	out := t.TempDir()
	code, _, stderr := likeness(t, []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT="}, "run", writeSpec(t, cases[1].body), "--out", out)
	if code != exitInput || !strings.Contains(stderr, cases[1].want) {
		t.Errorf("run: exit %d\n%s", code, stderr)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("run with a bad spec wrote %d entries to --out", len(entries))
	}
	keys, err := c.rdb.Keys(context.Background(), "*").Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("Redis has keys after bad submits: %v, %v", keys, err)
	}
	objs, err := c.bucket.List(context.Background(), "")
	if err == nil && len(objs) != 0 {
		t.Errorf("bucket has %d objects after bad submits", len(objs))
	}
}

func TestInfrastructureDownExitsThree(t *testing.T) {
	t.Parallel()
	path := writeSpec(t, distSpec("down", 10))
	code, _, stderr := likeness(t, []string{"LIKENESS_REDIS_URL=redis://127.0.0.1:1/0", "LIKENESS_S3_ENDPOINT=127.0.0.1:1"}, "submit", path)
	if code != exitInfra || !strings.Contains(stderr, "does not answer") {
		t.Errorf("exit %d; want %d\n%s", code, exitInfra, stderr)
	}
}

// TestWorkerSIGTERMLosesNothing stops a busy worker gracefully: its tasks
// in flight finish (or are requeued), it exits 0, and another worker
// completes the run with every task exactly once.
func TestWorkerSIGTERMLosesNothing(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	specPath := writeSpec(t, distSpec("term", 800))
	code, stdout, stderr := likeness(t, c.env, "submit", specPath)
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, stderr)
	}
	run := strings.TrimSpace(stdout)
	first := start(t, c.env, "worker", "--concurrency", "6")
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := c.runs.Get(context.Background(), run)
		if err == nil && st.Done() >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker finished nothing in a minute:\n%s", first.errOut())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := first.wait(t, 45*time.Second); code != 0 {
		t.Fatalf("worker exited %d after SIGTERM", code)
	}
	st, _ := c.runs.Get(context.Background(), run)
	if st.Done() >= 24 {
		t.Fatal("the run finished before SIGTERM; nothing was in flight")
	}
	start(t, c.env, "worker", "--concurrency", "6")
	c.waitFinalized(t, run, 2*time.Minute)
	c.checkOnce(t, run, 24)
}
