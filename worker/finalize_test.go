package worker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/scheduler"
)

// TestFinalizeStreamsRecords: the fan-in, which spools records instead of
// holding them, still leaves a record that does not decode out of the
// manifest and lists it in run.json, keeps one record per task (the
// latest, however many the bucket holds), and writes the manifest sorted.
func TestFinalizeStreamsRecords(t *testing.T) {
	t.Parallel()
	b := setup(t, &scripted{}, nil)
	s := loadSpec(t, specWith("one", "two", "three"))
	run := scheduler.RunID(s)
	ctx := context.Background()
	first := s.Expand()[0]
	// Before the run: a record that does not decode, and an old failed
	// record of the first task under another key (a copy a store kept).
	garbage := store.RecordsPrefix(run) + "zz-garbage.json"
	if err := b.blobs.Put(ctx, garbage, []byte(`{"task": `), "application/json"); err != nil {
		t.Fatal(err)
	}
	stale, _ := json.Marshal(manifest.Record{Run: run, Task: first.ID, Character: first.Character, Prompt: first.Prompt,
		Model: first.Model, Status: manifest.Failed, Error: "stale", FinishedAt: time.Unix(1, 0)})
	if err := b.blobs.Put(ctx, store.RecordsPrefix(run)+"zz-stale.json", stale, "application/json"); err != nil {
		t.Fatal(err)
	}
	st, recs := b.run(s)
	if st.Succeeded != 3 || len(recs) != 3 {
		t.Fatalf("%d succeeded, %d manifest lines; want 3 and 3", st.Succeeded, len(recs))
	}
	for i, r := range recs {
		if r.Status != manifest.Succeeded || r.Error != "" {
			t.Errorf("task %s: %s %q; want the succeeded record, not the stale one", r.Task, r.Status, r.Error)
		}
		if i > 0 && recs[i-1].Prompt >= r.Prompt {
			t.Errorf("manifest not sorted by prompt: %s before %s", recs[i-1].Prompt, r.Prompt)
		}
	}
	raw, err := b.blobs.Get(ctx, store.SummaryKey(run))
	if err != nil {
		t.Fatal(err)
	}
	var sum manifest.Summary
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != 3 || sum.Failed != 0 || len(sum.UnreadableRecords) != 1 || sum.UnreadableRecords[0] != garbage {
		t.Errorf("run.json: %d succeeded, %d failed, unreadable %v; want 3, 0 and [%s]", sum.Succeeded, sum.Failed, sum.UnreadableRecords, garbage)
	}
	if _, err := b.blobs.Get(ctx, store.ReportKey(run)); err != nil {
		t.Errorf("report: %v", err)
	}
}
