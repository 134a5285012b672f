package worker

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/artifact"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
)

// handleFinalize is the fan-in: it gathers every task record of the run and
// writes manifest.jsonl, run.json and the HTML report. It is idempotent: a
// second execution rewrites the same files from the same records. Its
// memory does not grow with the run: records are spooled to a local
// temporary file (manifest.Spool), the manifest is streamed to the store
// and the artifacts are made a character at a time.
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
	return w.fanIn(ctx, st)
}

// fanIn writes the run's manifest, summary and artifacts from its records,
// marks it finalized and queues its webhook.
func (w *Worker) fanIn(ctx context.Context, st *runstate.Status) error {
	p := task.Finalize{RunID: st.ID}
	// The records go to a spool on local disk, not to memory: a run of
	// 100,000 tasks has 100 MB of them. The spool orders and deduplicates
	// them and counts them for run.json; the manifest and the artifacts
	// (a character at a time) are read back from it.
	sp, err := manifest.NewSpool("")
	if err != nil {
		return fmt.Errorf("finalize run %s: %w", p.RunID, err)
	}
	defer sp.Close()
	// The sheet cells the folds packed go to another local spool, read
	// beside the records.
	cells, err := artifact.NewCells("")
	if err != nil {
		return fmt.Errorf("finalize run %s: %w", p.RunID, err)
	}
	defer cells.Close()
	began := time.Now()
	var (
		unreadable  []string
		recordsRead int
	)
	rg, rctx := errgroup.WithContext(ctx)
	rg.Go(func() error { return w.readCells(rctx, p.RunID, cells) })
	rg.Go(func() (err error) {
		unreadable, recordsRead, err = w.spoolRecords(rctx, p.RunID, sp)
		return err
	})
	if err := rg.Wait(); err != nil {
		return err
	}
	if d := sp.Dropped(); d > 0 {
		w.log.WarnContext(ctx, "second records of a task left out of the manifest", "run_id", p.RunID, "records", d)
	}
	meta := manifest.RunMeta{
		Run: st.ID, Name: st.Name, SpecKey: st.SpecKey, Total: st.Total,
		BudgetUSD: st.BudgetUSD, CreatedAt: st.CreatedAt, FinishedAt: w.cfg.Now(),
		TraceID: traceIDOf(st.TraceParent),
	}
	sum, err := sp.Summary(meta)
	if err != nil {
		return fmt.Errorf("finalize run %s: %w", p.RunID, err)
	}
	for i := range sum.Models {
		if m, ok := w.cfg.Registry.Lookup(sum.Models[i].ModelRef); ok {
			sum.Models[i].Returns = m.Returns()
		}
	}
	sum.UnreadableRecords = unreadable
	for _, key := range unreadable {
		w.log.ErrorContext(ctx, "record unreadable: left out of the manifest, listed in run.json", "run_id", p.RunID, "key", key)
	}
	read := time.Now()
	// The manifest (then run.json) is streamed to the store while the
	// thumbnails, sheets and report pages are made: the one copies the
	// spool's lines, the others decode them a character at a time.
	var manifestS float64
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := w.putStream(gctx, store.ManifestKey(p.RunID), "application/x-ndjson", func(out io.Writer) error {
			_, err := sp.WriteTo(out)
			return err
		})
		if err != nil {
			return fmt.Errorf("store manifest: %w", err)
		}
		sumJSON, err := json.MarshalIndent(sum, "", "  ")
		if err != nil {
			return fmt.Errorf("encode summary: %w", err)
		}
		if err := w.cfg.Store.Put(gctx, store.SummaryKey(p.RunID), sumJSON, "application/json"); err != nil {
			return fmt.Errorf("store summary: %w", err)
		}
		manifestS = time.Since(read).Seconds()
		return nil
	})
	g.Go(func() error {
		// Thumbnails, character sheets and the report pages: package artifact.
		acfg := artifact.Config{Store: w.cfg.Store, Logger: w.log, Cells: cells}
		if err := artifact.WriteFrom(gctx, acfg, sum, sp.Models(), sp.Characters()); err != nil {
			return fmt.Errorf("run artifacts: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return err
	}
	n, err := w.cfg.Runs.MarkFinalized(ctx, p.RunID)
	if err != nil {
		return err
	}
	// What the fold list still holds was read from the records.
	if err := w.cfg.Runs.DropFold(ctx, p.RunID); err != nil {
		w.log.WarnContext(ctx, "fold list not deleted; it expires with the run", "run_id", p.RunID, "err", err)
	}
	w.log.InfoContext(ctx, "run finalized", "run_id", p.RunID, "records", sp.Len(), "record_objects_read", recordsRead,
		"packed_cells", cells.Len(), "succeeded", sum.Succeeded, "failed", sum.Failed, "cost_usd", sum.CostUSD, "finalized", n,
		"read_s", read.Sub(began).Seconds(), "manifest_s", manifestS, "artifacts_s", time.Since(read).Seconds())
	if err := w.enqueueNotify(ctx, p.RunID, n); err != nil {
		// The fan-in is done; running it again for the webhook would count
		// a second finalization; this finalization goes unannounced.
		w.log.ErrorContext(ctx, "run finalized but its webhook could not be queued", "run_id", p.RunID, "err", err)
	}
	return nil
}

// streamPutter is a store that uploads a stream of unknown length with
// bounded memory (store.S3, store.Dir).
type streamPutter interface {
	PutStream(ctx context.Context, key string, r io.Reader, contentType string) error
}

// putStream stores what write writes under key: streamed when the store
// can, else buffered and put whole. An error from write is returned (and
// nothing is stored); so is the store's.
func (w *Worker) putStream(ctx context.Context, key, contentType string, write func(io.Writer) error) error {
	sp, ok := w.cfg.Store.(streamPutter)
	if !ok {
		var buf bytes.Buffer
		if err := write(&buf); err != nil {
			return err
		}
		return w.cfg.Store.Put(ctx, key, buf.Bytes(), contentType)
	}
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		bw := bufio.NewWriterSize(pw, 256<<10)
		err := write(bw)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err) // nil: the reader sees EOF
		werr <- err
	}()
	err := sp.PutStream(ctx, key, pr, contentType)
	// A store that stopped reading early unblocks the writer.
	pr.CloseWithError(cmp.Or(err, io.ErrClosedPipe))
	if e := <-werr; e != nil && !errors.Is(e, io.ErrClosedPipe) {
		return e
	}
	return err
}

// traceIDOf returns the trace id of a W3C traceparent ("00-<trace>-<span>-<flags>").
func traceIDOf(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	return parts[1]
}
