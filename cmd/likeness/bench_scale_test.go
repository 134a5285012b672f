package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/likeness-run/likeness/internal/testenv"
)

// TestBenchScaleSmall runs `likeness bench scale` at 400 tasks against the
// real Redis and MinIO: the submit, the tasks finished through runstate,
// the fan-in in a `likeness worker` process and the figures it prints. The
// targets are for 100,000 tasks (scripts/bench.sh scale); at this size, on
// a Redis other tests use at the same time, the per-task Redis figures are
// noise, so the exit status may be 1 for them, but the run must work end
// to end, and what does not depend on scale must hold.
func TestBenchScaleSmall(t *testing.T) {
	addr, first := testenv.RedisDBs(t, 4) // scale flushes and uses first+3
	s3env := testenv.S3(t)
	env := []string{
		"LIKENESS_REDIS_URL=redis://" + addr,
		"LIKENESS_S3_ENDPOINT=" + s3env.Endpoint,
		"LIKENESS_S3_ACCESS_KEY=" + s3env.AccessKey,
		"LIKENESS_S3_SECRET_KEY=" + s3env.SecretKey,
		"LIKENESS_S3_BUCKET=benchtest",
	}
	args := []string{"bench", "scale", "--tasks=400", fmt.Sprintf("--redis-db=%d", first), "--dir", t.TempDir()}
	p := start(t, env, args...)
	code := p.wait(t, 3*time.Minute)
	if code != 0 && code != 1 {
		t.Fatalf("likeness %s: exit %d\n%s", strings.Join(args, " "), code, p.errOut())
	}
	if code == 1 && !strings.Contains(p.errOut(), "missed its targets") {
		t.Fatalf("exit 1 without a missed target:\n%s", p.errOut())
	}
	var res struct {
		Scenario                  string  `json:"scenario"`
		Tasks                     int     `json:"tasks"`
		SubmitS                   float64 `json:"submit_s"`
		RedisBytesPerQueuedTask   float64 `json:"redis_bytes_per_queued_task"`
		RedisBytesPerFinishedTask float64 `json:"redis_bytes_per_finished_task"`
		FinalizeS                 float64 `json:"finalize_s"`
		FinalizePeakRSSMB         float64 `json:"finalize_peak_rss_mb"`
		LargestReportPageKB       float64 `json:"largest_report_page_kb"`
	}
	if err := json.Unmarshal([]byte(p.out()), &res); err != nil {
		t.Fatalf("stdout is not one JSON line: %v\n%s\nstderr:\n%s", err, p.out(), p.errOut())
	}
	if res.Scenario != "scale" || res.Tasks != 400 {
		t.Errorf("scenario %q with %d tasks; want scale with 400", res.Scenario, res.Tasks)
	}
	// The Redis figures are used_memory deltas of the whole server, which
	// other tests share here: at 400 tasks they say nothing (the bench
	// measures them on a Redis of its own), so they are not checked.
	if res.SubmitS <= 0 || res.FinalizeS <= 0 {
		t.Errorf("submit_s %v, finalize_s %v: want measured times", res.SubmitS, res.FinalizeS)
	}
	if res.FinalizePeakRSSMB < 10 || res.FinalizePeakRSSMB > 300 {
		t.Errorf("finalize_peak_rss_mb %.1f: want the worker's peak, under 300", res.FinalizePeakRSSMB)
	}
	if res.LargestReportPageKB <= 0 || res.LargestReportPageKB > 2048 {
		t.Errorf("largest_report_page_kb %.1f: want a page, under 2 MiB", res.LargestReportPageKB)
	}
	for _, want := range []string{"manifest.jsonl has 400 lines", "run.json counts 400 succeeded"} {
		if !strings.Contains(p.errOut(), want) {
			t.Errorf("progress does not say %q:\n%s", want, p.errOut())
		}
	}
}
