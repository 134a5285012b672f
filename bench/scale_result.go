package bench

import (
	"errors"
	"fmt"
)

// ScenarioScale is the scale scenario: a 100,000-task run's submit, its
// weight in Redis and its fan-in (scale.go).
const ScenarioScale = "scale"

// Targets of the scale scenario (docs/benchmarks.md, "scale").
const (
	MaxScaleSubmitS             = 8
	MaxRedisBytesPerQueuedTask  = 1000
	MaxRedisBytesPerFinished    = 200
	MaxScaleFinalizeS           = 30
	MaxScaleFinalizePeakRSSMB   = 300
	MaxScaleLargestReportPageKB = 2048
)

// ScaleResult is the JSON line of the scale scenario. Tasks are finished
// by the bench (output and record stored, the task counted through
// runstate as a worker's settle does), not by a provider; the fan-in runs
// in a `likeness worker` process.
type ScaleResult struct {
	Scenario string `json:"scenario"`
	Tasks    int    `json:"tasks"`
	// SubmitS is the producer's Submit of the spec: references, run state
	// and every task enqueued, in seconds.
	SubmitS float64 `json:"submit_s"`
	// RedisBytesPerQueuedTask is Redis's used_memory after the submit minus
	// before it, per task.
	RedisBytesPerQueuedTask float64 `json:"redis_bytes_per_queued_task"`
	// RedisBytesPerFinishedTask is used_memory once every task has ended,
	// minus before the submit, per task: what a finished run leaves in
	// Redis until its state expires.
	RedisBytesPerFinishedTask float64 `json:"redis_bytes_per_finished_task"`
	// FinalizeS is from enqueueing the run:finalize task to the run marked
	// finalized (manifest, run.json, thumbnails, sheets, report written).
	FinalizeS float64 `json:"finalize_s"`
	// FinalizePeakRSSMB is the finalizing worker process's peak resident
	// set (getrusage ru_maxrss), in MiB.
	FinalizePeakRSSMB float64 `json:"finalize_peak_rss_mb"`
	// LargestReportPageKB is the largest object under report/, in KiB.
	LargestReportPageKB float64 `json:"largest_report_page_kb"`
}

// Check reports the targets the result misses.
func (r ScaleResult) Check() error {
	var errs []error
	if r.SubmitS > MaxScaleSubmitS {
		errs = append(errs, fmt.Errorf("submit_s %.2f is above %d", r.SubmitS, MaxScaleSubmitS))
	}
	if r.RedisBytesPerQueuedTask > MaxRedisBytesPerQueuedTask {
		errs = append(errs, fmt.Errorf("redis_bytes_per_queued_task %.0f is above %d", r.RedisBytesPerQueuedTask, MaxRedisBytesPerQueuedTask))
	}
	if r.RedisBytesPerFinishedTask > MaxRedisBytesPerFinished {
		errs = append(errs, fmt.Errorf("redis_bytes_per_finished_task %.0f is above %d", r.RedisBytesPerFinishedTask, MaxRedisBytesPerFinished))
	}
	if r.FinalizeS > MaxScaleFinalizeS {
		errs = append(errs, fmt.Errorf("finalize_s %.2f is above %d", r.FinalizeS, MaxScaleFinalizeS))
	}
	if r.FinalizePeakRSSMB > MaxScaleFinalizePeakRSSMB {
		errs = append(errs, fmt.Errorf("finalize_peak_rss_mb %.1f is above %d", r.FinalizePeakRSSMB, MaxScaleFinalizePeakRSSMB))
	}
	if r.LargestReportPageKB > MaxScaleLargestReportPageKB {
		errs = append(errs, fmt.Errorf("largest_report_page_kb %.1f is above %d", r.LargestReportPageKB, MaxScaleLargestReportPageKB))
	}
	return errors.Join(errs...)
}
