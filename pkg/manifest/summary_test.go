package manifest

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 3, 14, 9, 30, 0, 0, time.UTC)

func TestSummarize(t *testing.T) {
	t.Parallel()

	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	rec := func(task, model string, st Status, latency int64, attempts int, cost float64) Record {
		return Record{
			Run: "r1", Task: task, Character: "mara", Prompt: "piano", Model: model,
			ModelRef: "sim:" + model, Status: st, ProviderLatencyMS: latency,
			Attempts: attempts, CostUSD: cost, FinishedAt: at(30),
		}
	}
	cached := rec("a4", "alpha", Succeeded, 5, 0, 0)
	cached.Cached = true
	// An earlier failed delivery of b1, superseded by its later success.
	staleB1 := rec("b1", "beta", Failed, 0, 1, 0)
	staleB1.FinishedAt = at(10)
	lateB5 := rec("b5", "beta", Succeeded, 50, 1, 0.01)
	lateB5.FinishedAt = at(95)

	records := []Record{
		rec("a1", "alpha", Succeeded, 300, 1, 0.04),
		rec("a2", "alpha", Succeeded, 100, 2, 0.04),
		rec("a3", "alpha", Succeeded, 200, 1, 0.04),
		cached,
		rec("a5", "alpha", Failed, 999, 3, 0),
		rec("a6", "alpha", SkippedBudget, 0, 0, 0),
		rec("a7", "alpha", SkippedCanceled, 0, 0, 0),
		staleB1,
		rec("b1", "beta", Succeeded, 10, 1, 0.01),
		rec("b2", "beta", Succeeded, 40, 1, 0.01),
		rec("b3", "beta", Succeeded, 20, 1, 0.01),
		rec("b4", "beta", Succeeded, 30, 1, 0.01),
		lateB5,
	}
	alpha := ModelStats{
		Model: "alpha", ModelRef: "sim:alpha", Total: 7, Succeeded: 4, Failed: 1, Skipped: 2,
		SuccessRate: 4.0 / 7,
		// Latencies of succeeded, non-cached tasks: 100, 200, 300.
		LatencyP50MS: 200, LatencyP95MS: 300, LatencyMeanMS: 200,
		Attempts: 7, CostUSD: 0.12,
	}
	beta := ModelStats{
		Model: "beta", ModelRef: "sim:beta", Total: 5, Succeeded: 5, SuccessRate: 1,
		// 10, 20, 30, 40, 50: ranks ceil(2.5)=3 and ceil(4.75)=5.
		LatencyP50MS: 30, LatencyP95MS: 50, LatencyMeanMS: 30,
		Attempts: 5, CostUSD: 0.05,
	}
	zeta := ModelStats{Model: "zeta", ModelRef: "sim:zeta-v2"}

	tests := []struct {
		name    string
		meta    RunMeta
		records []Record
		want    Summary
	}{
		{
			name: "mixed run",
			meta: RunMeta{
				Run: "r1", Name: "sheet", SpecKey: "runs/r1/spec.yaml", Total: 14, BudgetUSD: 1,
				CreatedAt: t0, FinishedAt: at(100), TraceID: "abc",
				ModelRefs: map[string]string{"alpha": "sim:alpha", "beta": "sim:beta", "zeta": "sim:zeta-v2"},
			},
			records: records,
			want: Summary{
				Run: "r1", Name: "sheet", SpecKey: "runs/r1/spec.yaml",
				Total: 14, Succeeded: 9, Failed: 1, Skipped: 2, Cached: 1,
				CostUSD: 0.17, BudgetUSD: 1, CreatedAt: t0, FinishedAt: at(100), WallS: 100,
				Models: []ModelStats{alpha, beta, zeta}, TraceID: "abc",
			},
		},
		{
			name:    "finish and total from records",
			meta:    RunMeta{Run: "r1", CreatedAt: t0},
			records: records,
			want: Summary{
				Run: "r1", Total: 12, Succeeded: 9, Failed: 1, Skipped: 2, Cached: 1,
				CostUSD: 0.17, CreatedAt: t0, FinishedAt: at(95), WallS: 95,
				Models: []ModelStats{alpha, beta},
			},
		},
		{
			name: "no records",
			meta: RunMeta{Run: "r2", Total: 3, CreatedAt: t0, ModelRefs: map[string]string{"zeta": "sim:zeta-v2"}},
			want: Summary{Run: "r2", Total: 3, CreatedAt: t0, Models: []ModelStats{zeta}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Summarize(tt.meta, tt.records)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Summarize() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]int64, 100)
	for i := range hundred {
		hundred[i] = int64(i + 1)
	}
	tests := []struct {
		values []int64
		p      float64
		want   int64
	}{
		{nil, 50, 0},
		{[]int64{7}, 50, 7},
		{[]int64{7}, 95, 7},
		{[]int64{1, 2}, 50, 1},
		{[]int64{1, 2}, 95, 2},
		{[]int64{15, 20, 35, 40, 50}, 30, 20},
		{[]int64{15, 20, 35, 40, 50}, 40, 20},
		{[]int64{15, 20, 35, 40, 50}, 50, 35},
		{[]int64{15, 20, 35, 40, 50}, 100, 50},
		{hundred, 50, 50},
		{hundred, 95, 95},
		{hundred, 0, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("p%v of %d", tt.p, len(tt.values)), func(t *testing.T) {
			t.Parallel()
			if got := percentile(tt.values, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %d, want %d", tt.values, tt.p, got, tt.want)
			}
		})
	}
}

// TestSummarizerStreams checks that adding records one at a time gives the
// summary Summarize computes from the whole slice.
func TestSummarizerStreams(t *testing.T) {
	t.Parallel()
	s, records := sampleRun()
	meta := RunMeta{Run: s.Run, Name: s.Name, SpecKey: s.SpecKey, Total: 16, BudgetUSD: s.BudgetUSD,
		CreatedAt: s.CreatedAt, FinishedAt: s.FinishedAt, TraceID: s.TraceID,
		ModelRefs: map[string]string{"kontext": "replicate:kontext", "ideogram": "replicate:ideogram", "unused": "openai:gpt-image-1"}}
	z := NewSummarizer(meta)
	deduped := Dedupe(records)
	for i := len(deduped) - 1; i >= 0; i-- { // any order
		z.Add(deduped[i])
	}
	if diff := cmp.Diff(s, z.Summary()); diff != "" {
		t.Errorf("Summarizer differs from Summarize (-want +got):\n%s", diff)
	}
}
