package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/dashboard"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

// TestDashboardRunPageLoad2000 times what a browser does to open the page
// of a 2,000-task run: the page itself, then its first data fetch (the
// detail and the first gallery page, in parallel), against the real Redis
// and MinIO. It measures a fresh server (every record read from the
// bucket), the next refresh, and a finalized run (one manifest read).
func TestDashboardRunPageLoad2000(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("writes 2,000 records to MinIO")
	}
	const n = 2000
	b := setup(t, nil)
	ctx := context.Background()
	const run = "big-1"
	created := time.Now().Add(-10 * time.Minute)
	models := []string{"kontext", "seededit", "ideogram", "gpt-image"}
	refs := make([]string, len(models))
	for i, m := range models {
		refs[i] = "sim:" + m
	}
	if _, err := b.runs.Create(ctx, runstate.Run{ID: run, Name: "big", Total: n, BudgetUSD: 500, CreatedAt: created, Models: refs}); err != nil {
		t.Fatal(err)
	}
	recs := make([]manifest.Record, n)
	for i := range recs {
		m := models[i%len(models)]
		char, prompt, variant := fmt.Sprintf("c%02d", i/len(models)%25), fmt.Sprintf("p%d", i/len(models)/25%10), i/len(models)/250
		r := manifest.Record{Run: run, Task: fmt.Sprintf("t%04d", i), Character: char, Prompt: prompt, PromptText: "a prompt " + prompt,
			Model: m, ModelRef: "sim:" + m, Provider: "sim", Variant: variant, Seed: int64(i), Status: manifest.Succeeded,
			ReferenceKey: store.RefKey(fmt.Sprintf("%064d", i%25), "png"), OutputKey: store.OutputKey(run, char, m, prompt, variant, "png"),
			Width: 512, Height: 512, ContentType: "image/png", Bytes: 200000, CostUSD: 0.04, ProviderLatencyMS: int64(800 + i%400),
			Attempts: 1, AttemptLog: []manifest.Attempt{{N: 1, Seed: int64(i), StartedAt: created, DurationMS: 900}},
			StartedAt: created, FinishedAt: created.Add(time.Duration(i) * 250 * time.Millisecond), TraceID: fmt.Sprintf("%032x", i)}
		if i%50 == 7 {
			r.Status, r.ErrorClass, r.Error, r.OutputKey = manifest.Failed, "safety", "flagged by the safety filter", ""
		}
		recs[i] = r
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range recs {
		g.Go(func() error {
			raw, err := json.Marshal(recs[i])
			if err != nil {
				return err
			}
			if err := b.blob.Put(gctx, store.RecordKey(run, recs[i].Task), raw, "application/json"); err != nil {
				return err
			}
			_, err = b.runs.Complete(gctx, run, recs[i].Task, recs[i].Status, false, recs[i].CostUSD)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}

	// open loads the page, then its first data fetch as run.js does.
	open := func(base string) (page, total time.Duration) {
		t.Helper()
		start := time.Now()
		fetch := func(path string) []byte {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Error(err)
				return nil
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			if resp.StatusCode != 200 {
				t.Errorf("%s: %d", path, resp.StatusCode)
			}
			return buf.Bytes()
		}
		html := fetch("/runs/" + run)
		page = time.Since(start)
		if !bytes.Contains(html, []byte(`id="done-count">2000<`)) {
			t.Errorf("the page does not show the progress itself:\n%.2000s", html)
		}
		var detail, gallery []byte
		var wg sync.WaitGroup
		wg.Go(func() { detail = fetch("/api/runs/" + run + "/detail") })
		wg.Go(func() { gallery = fetch("/api/runs/" + run + "/gallery?limit=120") })
		wg.Wait()
		took := time.Since(start)
		var d dashboard.Detail
		var gal dashboard.Gallery
		if json.Unmarshal(detail, &d) != nil || json.Unmarshal(gallery, &gal) != nil {
			t.Fatalf("bad answers:\n%.300s\n%.300s", detail, gallery)
		}
		if d.Run.Done != n || len(d.Models) != len(models) || gal.Total != n || len(gal.Items) != 120 || len(d.Failures) != 1 || d.Failures[0].Count != n/50 {
			t.Errorf("2,000-task run: done %d, %d models, gallery %d/%d, failures %+v", d.Run.Done, len(d.Models), len(gal.Items), gal.Total, d.Failures)
		}
		return page, took
	}
	server := func() string {
		h, err := dashboard.New(dashboard.Config{Runs: b.runs, Store: b.blob, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}

	live := server()
	coldPage, cold := open(live)
	time.Sleep(600 * time.Millisecond) // past the records' reuse interval
	_, warm := open(live)

	var buf bytes.Buffer
	if err := manifest.WriteJSONL(&buf, recs); err != nil {
		t.Fatal(err)
	}
	if err := b.blob.Put(ctx, store.ManifestKey(run), buf.Bytes(), "application/x-ndjson"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.runs.MarkFinalized(ctx, run); err != nil {
		t.Fatal(err)
	}
	_, final := open(server())

	t.Logf("2,000-task run: page with progress %s; page + first data fetch: fresh server %s, next refresh %s, finalized run (manifest) %s",
		coldPage.Round(time.Millisecond), cold.Round(time.Millisecond), warm.Round(time.Millisecond), final.Round(time.Millisecond))
	// The machine's load moves every figure, so the checks compare them: a
	// refresh that read (or listed) every record again, or a finalized run
	// read record by record, would cost about as much as the fresh load.
	if cold > time.Minute || warm > cold/4 || final > cold {
		t.Errorf("fresh %s, refresh %s, finalized %s: want refresh under a quarter of fresh, finalized under fresh", cold, warm, final)
	}
}
