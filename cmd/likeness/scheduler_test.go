package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/likeness-run/likeness/scheduler"
)

// TestSchedulerCronAndSweep runs `likeness scheduler` against the real
// Redis and MinIO: a cron entry submits its spec on schedule (once: the
// unchanged spec is the same run), a worker finishes the run, and the
// scheduler stops cleanly on SIGTERM; `--once` reports its sweep as JSON.
func TestSchedulerCronAndSweep(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	specPath := writeSpec(t, distSpec("cron-e2e", 20))
	cronPath := filepath.Join(t.TempDir(), "cron.yaml")
	if err := os.WriteFile(cronPath, []byte("entries:\n  - name: every-second\n    schedule: \"@every 1s\"\n    spec: "+specPath+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sched := start(t, c.env, "scheduler", "--cron", cronPath, "--sweep-every", "1s")
	w := start(t, c.env, "worker")
	var run string
	deadline := time.Now().Add(30 * time.Second)
	for run == "" && time.Now().Before(deadline) {
		ids, err := c.runs.List(t.Context(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > 0 {
			run = ids[0]
		}
		time.Sleep(100 * time.Millisecond)
	}
	if run == "" {
		t.Fatalf("the cron entry submitted nothing in 30s\n%s", sched.errOut())
	}
	st := c.waitFinalized(t, run, time.Minute)
	if st.Succeeded != 24 {
		t.Errorf("run %s: %d succeeded; want 24", run, st.Succeeded)
	}
	time.Sleep(1500 * time.Millisecond) // at least one more tick of the unchanged spec
	if ids, _ := c.runs.List(t.Context(), 10); len(ids) != 1 {
		t.Errorf("runs %v; an unchanged spec must stay one run", ids)
	}
	for _, p := range []*proc{sched, w} {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, time.Minute); code != 0 {
			t.Errorf("%v exited %d after SIGTERM\n%s", p.cmd.Args[1:], code, p.errOut())
		}
	}
	if !strings.Contains(sched.errOut(), "spec unchanged since its run was submitted") {
		t.Errorf("the scheduler did not log the unchanged tick:\n%s", sched.errOut())
	}

	code, stdout, stderr := likeness(t, c.env, "scheduler", "--once")
	var rep scheduler.SweepReport
	if code != 0 || json.Unmarshal([]byte(stdout), &rep) != nil || rep.Checked != 1 || len(rep.Refinalized) != 0 {
		t.Errorf("scheduler --once: exit %d, %q\n%s", code, stdout, stderr)
	}
}

func TestSchedulerBadCronFileIsBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cronPath := filepath.Join(dir, "cron.yaml")
	if err := os.WriteFile(cronPath, []byte("entries:\n  - schedule: \"61 * * * *\"\n    spec: missing.yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := likeness(t, []string{"LIKENESS_REDIS_URL=redis://127.0.0.1:1/0"}, "scheduler", "--cron", cronPath)
	if code != exitInput || !strings.Contains(stderr, cronPath+`:2: entries[0].schedule: "61 * * * *"`) {
		t.Errorf("exit %d, want %d with the entry's line\n%s", code, exitInput, stderr)
	}
	// A schedule that parses but a spec that does not load: refused at start.
	if err := os.WriteFile(cronPath, []byte("entries:\n  - schedule: \"@daily\"\n    spec: missing.yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = likeness(t, []string{"LIKENESS_REDIS_URL=redis://127.0.0.1:1/0"}, "scheduler", "--cron", cronPath)
	if code != exitInput || !strings.Contains(stderr, cronPath+":2: entries (missing.yaml)") {
		t.Errorf("exit %d, want %d naming the entry\n%s", code, exitInput, stderr)
	}
}

// TestBadWebhookURLIsBadInput: a webhook URL that cannot work stops the
// worker before it starts, without quoting the URL (it may hold a token).
func TestBadWebhookURLIsBadInput(t *testing.T) {
	t.Parallel()
	code, _, stderr := likeness(t, []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT=", "LIKENESS_WEBHOOK_URL=ftp://hooks.example/t0ken"},
		"run", filepath.Join("..", "..", "examples", "quickstart.yaml"), "--out", t.TempDir(), "--no-progress")
	if code != exitInput || !strings.Contains(stderr, "LIKENESS_WEBHOOK_URL must be an http:// or https:// URL") || strings.Contains(stderr, "t0ken") {
		t.Errorf("exit %d, want %d with a message that does not quote the URL\n%s", code, exitInput, stderr)
	}
}

// TestRunWaitsForItsWebhook: `likeness run` in the embedded mode delivers
// the run's webhook before it exits, since its queue goes with it.
func TestRunWaitsForItsWebhook(t *testing.T) {
	t.Parallel()
	got := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- r.Header.Get("webhook-id") + " " + string(body)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	code, stdout, stderr := likeness(t, []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT=", "LIKENESS_WEBHOOK_URL=" + srv.URL + "/hook"},
		"run", filepath.Join("..", "..", "examples", "quickstart.yaml"), "--out", t.TempDir(), "--no-progress")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	select {
	case req := <-got:
		if !strings.HasPrefix(req, "notify:quickstart-") || !strings.Contains(req, `"type":"run.finished"`) {
			t.Errorf("webhook request: %.200s", req)
		}
	default:
		t.Fatalf("likeness run exited before its webhook was delivered\n%s", stderr)
	}
}
