package manifest_test

import (
	"fmt"
	"os"
	"time"

	"github.com/likeness-run/likeness/pkg/manifest"
)

func ExampleSummarize() {
	start := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	records := []manifest.Record{
		{Task: "t1", Model: "kontext", Status: manifest.Succeeded, Attempts: 1, CostUSD: 0.04, ProviderLatencyMS: 4200},
		{Task: "t2", Model: "kontext", Status: manifest.Failed, Attempts: 3, ErrorClass: "SAFETY"},
		{Task: "t3", Model: "ideogram", Status: manifest.Succeeded, Cached: true},
		{Task: "t4", Model: "ideogram", Status: manifest.SkippedBudget},
	}
	s := manifest.Summarize(manifest.RunMeta{
		Run: "r1", Total: 4, CreatedAt: start, FinishedAt: start.Add(90 * time.Second),
	}, records)
	fmt.Printf("%d/%d succeeded, %d failed, %d skipped, %d cached, $%.2f in %.0fs\n",
		s.Succeeded, s.Total, s.Failed, s.Skipped, s.Cached, s.CostUSD, s.WallS)
	for _, m := range s.Models {
		fmt.Printf("%s: %.0f%% p50 %dms\n", m.Model, m.SuccessRate*100, m.LatencyP50MS)
	}
	// Output:
	// 2/4 succeeded, 1 failed, 1 skipped, 1 cached, $0.04 in 90s
	// ideogram: 50% p50 0ms
	// kontext: 50% p50 4200ms
}

func ExampleWriteJSONL() {
	finished := time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)
	records := []manifest.Record{
		{Task: "t2", Character: "mara", Prompt: "piano", Model: "kontext", Status: manifest.Succeeded, FinishedAt: finished},
		{Task: "t1", Character: "mara", Prompt: "anime", Model: "kontext", Status: manifest.Succeeded, FinishedAt: finished},
		// A redelivered t2 that finished earlier is dropped.
		{Task: "t2", Character: "mara", Prompt: "piano", Model: "kontext", Status: manifest.Failed, FinishedAt: finished.Add(-time.Minute)},
	}
	if err := manifest.WriteJSONL(os.Stdout, records); err != nil {
		fmt.Println(err)
	}
	// Output:
	// {"run":"","task":"t1","character":"mara","prompt":"anime","prompt_text":"","model":"kontext","model_ref":"","provider":"","variant":0,"seed":0,"status":"succeeded","reference_key":"","content_key":"","attempts":0,"cost_usd":0,"provider_latency_ms":0,"queue_wait_ms":0,"started_at":"0001-01-01T00:00:00Z","finished_at":"2026-03-14T09:00:00Z","cached":false}
	// {"run":"","task":"t2","character":"mara","prompt":"piano","prompt_text":"","model":"kontext","model_ref":"","provider":"","variant":0,"seed":0,"status":"succeeded","reference_key":"","content_key":"","attempts":0,"cost_usd":0,"provider_latency_ms":0,"queue_wait_ms":0,"started_at":"0001-01-01T00:00:00Z","finished_at":"2026-03-14T09:00:00Z","cached":false}
}

func ExampleRenderReport() {
	records := []manifest.Record{
		{Run: "r1", Task: "t1", Character: "mara", Prompt: "piano", Model: "kontext", Status: manifest.Succeeded,
			ReferenceKey: "refs/ab.png", OutputKey: "runs/r1/outputs/mara/kontext/piano/0.png"},
		{Run: "r1", Task: "t2", Character: "theo", Prompt: "piano", Model: "kontext", Status: manifest.Failed, Error: "flagged"},
	}
	s := manifest.Summarize(manifest.RunMeta{Run: "r1"}, records)
	err := manifest.RenderReport(s, records, manifest.ReportOptions{}, func(key string, html []byte) error {
		fmt.Println(key) // a store.Put in the fan-in
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// runs/r1/report/characters/mara/index.html
	// runs/r1/report/characters/theo/index.html
	// runs/r1/report/index.html
}
