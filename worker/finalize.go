package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/artifact"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
)

// finalizeReaders bounds concurrent record reads during the fan-in.
const finalizeReaders = 16

// handleFinalize is the fan-in: it gathers every task record of the run and
// writes manifest.jsonl, run.json and the HTML report. It is idempotent: a
// second execution rewrites the same files from the same records.
func (w *Worker) handleFinalize(ctx context.Context, t *asynq.Task) error {
	var p task.Finalize
	if err := task.Decode(t.Type(), t.Payload(), &p); err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	release, ok, err := w.claim(ctx, p.RunID, finalizeSlot)
	if err == nil && !ok {
		return &waitError{Wait: claimedWait, Err: errClaimed}
	}
	if err == nil {
		defer release()
		err = w.finalize(ctx, p)
	}
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		return err
	}
	// The bucket or Redis failed the fan-in: retry it with capped backoff
	// for as long as the run allows infrastructure faults; past that, stop
	// retrying and leave the run to the sweep every worker runs.
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	since, nerr := w.cfg.Runs.NoteInfra(nctx, p.RunID, finalizeSlot, err)
	if nerr != nil {
		since = w.cfg.Now()
	}
	failing := w.cfg.Now().Sub(since)
	if st, gerr := w.cfg.Runs.Get(nctx, p.RunID); gerr == nil && failing > st.InfraRetryFor {
		w.log.ErrorContext(ctx, "finalize kept failing past the run's infra_retry_for; the sweep will enqueue it again",
			"run_id", p.RunID, "failing_for", failing.Round(time.Second), "err", err)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	w.log.WarnContext(ctx, "finalize failed on infrastructure; retrying", "run_id", p.RunID,
		"failing_for", failing.Round(time.Millisecond), "err", err)
	return &infraError{Err: err, For: failing}
}

// finalizeSlot is the name under which a run's finalize notes its
// infrastructure faults, beside its tasks'.
const finalizeSlot = "finalize"

func (w *Worker) finalize(ctx context.Context, p task.Finalize) error {
	st, err := w.cfg.Runs.Get(ctx, p.RunID)
	if errors.Is(err, runstate.ErrNotFound) {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry) // expired: nothing to finalize
	}
	if err != nil {
		return err
	}
	if st.Complete() && st.Finalized > 0 {
		// A second delivery of this completion's fan-in (a rescued copy,
		// or the original recovered late): it is written and announced.
		return nil
	}
	records, unreadable, err := w.loadRecords(ctx, p.RunID)
	if err != nil {
		return err
	}
	records = manifest.Dedupe(records)
	meta := manifest.RunMeta{
		Run: st.ID, Name: st.Name, SpecKey: st.SpecKey, Total: st.Total,
		BudgetUSD: st.BudgetUSD, CreatedAt: st.CreatedAt, FinishedAt: w.cfg.Now(),
		TraceID: traceIDOf(st.TraceParent),
	}
	sum := manifest.Summarize(meta, records)
	for i := range sum.Models {
		if m, ok := w.cfg.Registry.Lookup(sum.Models[i].ModelRef); ok {
			sum.Models[i].Returns = m.Returns()
		}
	}
	sum.UnreadableRecords = unreadable
	for _, key := range unreadable {
		w.log.ErrorContext(ctx, "record unreadable: left out of the manifest, listed in run.json", "run_id", p.RunID, "key", key)
	}

	var jsonl bytes.Buffer
	if err := manifest.WriteJSONL(&jsonl, records); err != nil {
		return err
	}
	if err := w.cfg.Store.Put(ctx, store.ManifestKey(p.RunID), jsonl.Bytes(), "application/x-ndjson"); err != nil {
		return fmt.Errorf("store manifest: %w", err)
	}
	sumJSON, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return fmt.Errorf("encode summary: %w", err)
	}
	if err := w.cfg.Store.Put(ctx, store.SummaryKey(p.RunID), sumJSON, "application/json"); err != nil {
		return fmt.Errorf("store summary: %w", err)
	}
	// Thumbnails, character sheets and the report pages: package artifact.
	if err := artifact.Write(ctx, artifact.Config{Store: w.cfg.Store, Logger: w.log}, sum, records); err != nil {
		return fmt.Errorf("run artifacts: %w", err)
	}
	n, err := w.cfg.Runs.MarkFinalized(ctx, p.RunID)
	if err != nil {
		return err
	}
	w.log.InfoContext(ctx, "run finalized", "run_id", p.RunID, "records", len(records),
		"succeeded", sum.Succeeded, "failed", sum.Failed, "cost_usd", sum.CostUSD, "finalized", n)
	if err := w.enqueueNotify(ctx, p.RunID, n); err != nil {
		// The fan-in is done; running it again for the webhook would count
		// a second finalization; this finalization goes unannounced.
		w.log.ErrorContext(ctx, "run finalized but its webhook could not be queued", "run_id", p.RunID, "err", err)
	}
	return nil
}

// loadRecords reads every task record of a run, a bounded number at a
// time. A record that cannot be read because the store failed fails the
// load (the finalize is retried); one that was read but does not decode is
// returned by key as unreadable, for run.json to report.
func (w *Worker) loadRecords(ctx context.Context, run string) ([]manifest.Record, []string, error) {
	infos, err := w.cfg.Store.List(ctx, store.RecordsPrefix(run))
	if err != nil {
		return nil, nil, fmt.Errorf("list records: %w", err)
	}
	bad := make([]bool, len(infos))
	records := make([]manifest.Record, len(infos))
	errs := make([]error, len(infos))
	sem := make(chan struct{}, finalizeReaders)
	var wg sync.WaitGroup
	for i, info := range infos {
		if !strings.HasSuffix(info.Key, ".json") {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			raw, err := w.cfg.Store.Get(ctx, info.Key)
			if err != nil {
				errs[i] = fmt.Errorf("read record %s: %w", info.Key, err)
				return
			}
			if err := json.Unmarshal(raw, &records[i]); err != nil || records[i].Task == "" {
				bad[i] = true
			}
		}()
	}
	wg.Wait()
	out := records[:0]
	var unreadable []string
	for i := range records {
		if errs[i] != nil {
			return nil, nil, errs[i]
		}
		switch {
		case bad[i]:
			unreadable = append(unreadable, infos[i].Key)
		case records[i].Task != "":
			out = append(out, records[i])
		}
	}
	return out, unreadable, nil
}

// traceIDOf returns the trace id of a W3C traceparent ("00-<trace>-<span>-<flags>").
func traceIDOf(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}
