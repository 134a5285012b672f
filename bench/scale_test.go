package bench

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestScaleFanOut(t *testing.T) {
	t.Parallel()
	for n, want := range map[int][2]int{100_000: {100_000, 5}, 2000: {2000, 1}, 1: {200, 1}, 2001: {2200, 1}, 20_001: {40_000, 2}} {
		f := scaleFanOut(n)
		if f.tasks() != want[0] || f.characters != scaleCharacters || len(f.models) != 4 || f.variants != want[1] {
			t.Errorf("scaleFanOut(%d): %d tasks (%d characters × %d prompts × %d models × %d variants); want %d",
				n, f.tasks(), f.characters, f.prompts, len(f.models), f.variants, want[0])
		}
	}
}

func TestScaleResultCheck(t *testing.T) {
	t.Parallel()
	ok := ScaleResult{Scenario: ScenarioScale, Tasks: 100_000, SubmitS: 5.1, RedisBytesPerQueuedTask: 720,
		RedisBytesPerFinishedTask: 150, FinalizeS: 25, FinalizePeakRSSMB: 120, LargestReportPageKB: 1500}
	if err := ok.Check(); err != nil {
		t.Errorf("Check on a result that meets the targets: %v", err)
	}
	line, err := json.Marshal(ok)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"scenario":"scale","tasks":100000,"submit_s":5.1,"redis_bytes_per_queued_task":720,"redis_bytes_per_finished_task":150,"finalize_s":25,"finalize_peak_rss_mb":120,"largest_report_page_kb":1500}`
	if string(line) != want {
		t.Errorf("JSON line\n%s\nwant\n%s", line, want)
	}
	for name, tc := range map[string]struct {
		edit func(*ScaleResult)
		want string
	}{
		"slow submit":    {func(r *ScaleResult) { r.SubmitS = 10.4 }, "submit_s 10.40 is above 8"},
		"heavy queue":    {func(r *ScaleResult) { r.RedisBytesPerQueuedTask = 1204 }, "redis_bytes_per_queued_task 1204 is above 1000"},
		"heavy finished": {func(r *ScaleResult) { r.RedisBytesPerFinishedTask = 201 }, "redis_bytes_per_finished_task 201 is above 200"},
		"slow finalize":  {func(r *ScaleResult) { r.FinalizeS = 31 }, "finalize_s 31.00 is above 30"},
		"fat finalize":   {func(r *ScaleResult) { r.FinalizePeakRSSMB = 512 }, "finalize_peak_rss_mb 512.0 is above 300"},
		"big page":       {func(r *ScaleResult) { r.LargestReportPageKB = 2049 }, "largest_report_page_kb 2049.0 is above 2048"},
	} {
		r := ok
		tc.edit(&r)
		if err := r.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check = %v; want %q", name, err, tc.want)
		}
	}
}

func TestInfoField(t *testing.T) {
	t.Parallel()
	info := "# Memory\r\nused_memory:1234567\r\nused_memory_human:1.18M\r\nused_memory_rss:99\r\n"
	if v, ok := infoField(info, "used_memory"); !ok || v != 1234567 {
		t.Errorf("used_memory = %d, %v; want 1234567", v, ok)
	}
	if _, ok := infoField(info, "used_memory_peak"); ok {
		t.Error("a missing field was found")
	}
}
