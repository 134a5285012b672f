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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/artifact"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
)

// finalizeReaders bounds concurrent record reads during the fan-in: one
// small GET each, so the fan-in of a big run waits on the store unless
// many are in flight (on a 2-core MinIO: 2,600 reads/s at 16, 3,100 at 32).
const finalizeReaders = 32

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
	began := time.Now()
	unreadable, recordsRead, err := w.spoolRecords(ctx, p.RunID, sp)
	if err != nil {
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
		if err := artifact.WriteFrom(gctx, artifact.Config{Store: w.cfg.Store, Logger: w.log}, sum, sp.Models(), sp.Characters()); err != nil {
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
		"succeeded", sum.Succeeded, "failed", sum.Failed, "cost_usd", sum.CostUSD, "finalized", n,
		"read_s", read.Sub(began).Seconds(), "manifest_s", manifestS, "artifacts_s", time.Since(read).Seconds())
	if err := w.enqueueNotify(ctx, p.RunID, n); err != nil {
		// The fan-in is done; running it again for the webhook would count
		// a second finalization; this finalization goes unannounced.
		w.log.ErrorContext(ctx, "run finalized but its webhook could not be queued", "run_id", p.RunID, "err", err)
	}
	return nil
}

// spoolRecords reads every task record of a run into sp, walking the
// store's listings a page at a time, finalizeReaders reads at a time.
//
// The parts the run's folds wrote (parts/<seq>.jsonl, a batch of records
// each) are read while the records are listed; then only the records no
// part holds are read, or those written since the part that holds them
// (a task retried after its record was folded): a record is never older
// than the part it is folded into, since its line is pushed for folding
// after it is stored. Where a task has several records (a part written
// twice, a record read beside its part), the spool keeps the one that
// finished last.
//
// A record or part that cannot be read because the store failed fails the
// load (the finalize is retried); a record that was read but does not
// decode is returned by key as unreadable, for run.json to report. A line
// of a part that does not decode is skipped: its task's record is read.
// It also returns how many record objects it read.
func (w *Worker) spoolRecords(ctx context.Context, run string, sp *manifest.Spool) ([]string, int, error) {
	// The records are listed while the parts are read (a listing of
	// 100,000 records takes the store seconds); the listing keeps, of each
	// record, its task id and when it was written.
	type listed struct {
		id      string
		written time.Time
	}
	var records []listed
	prefix := store.RecordsPrefix(run)
	lg, lctx := errgroup.WithContext(ctx)
	lg.Go(func() error {
		return w.walk(lctx, prefix, func(info store.Info) error {
			if id, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, prefix), ".json"); ok {
				records = append(records, listed{id, info.ModTime})
			}
			return nil
		})
	})
	folded, err := w.spoolParts(ctx, run, sp)
	if lerr := lg.Wait(); err == nil && lerr != nil {
		err = fmt.Errorf("list records: %w", lerr)
	}
	if err != nil {
		return nil, 0, err
	}
	var (
		mu         sync.Mutex
		unreadable []string
		read       int
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(finalizeReaders)
	for _, rec := range records {
		if at, ok := folded[rec.id]; ok && rec.written.Before(at) {
			continue // the part that holds it was written after it
		}
		key := prefix + rec.id + ".json"
		g.Go(func() error {
			raw, err := w.cfg.Store.Get(gctx, key)
			if err != nil {
				return fmt.Errorf("read record %s: %w", key, err)
			}
			err = sp.Add(raw)
			mu.Lock()
			defer mu.Unlock()
			read++
			if errors.Is(err, manifest.ErrUnreadable) {
				unreadable = append(unreadable, key)
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, err
	}
	slices.Sort(unreadable)
	return unreadable, read, nil
}

// foldedReaders bounds concurrent part reads: a part is about 1 MB.
const foldedReaders = 4

// spoolParts reads the run's parts into sp and returns, for each task a
// part holds, when the latest part holding it was written.
func (w *Worker) spoolParts(ctx context.Context, run string, sp *manifest.Spool) (map[string]time.Time, error) {
	var (
		mu     sync.Mutex
		folded = map[string]time.Time{}
		bad    int
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(foldedReaders)
	err := w.walk(gctx, store.PartsPrefix(run), func(info store.Info) error {
		if !strings.HasSuffix(info.Key, ".jsonl") {
			return nil
		}
		g.Go(func() error {
			raw, err := w.cfg.Store.Get(gctx, info.Key)
			if err != nil {
				return fmt.Errorf("read part %s: %w", info.Key, err)
			}
			for line := range bytes.Lines(raw) {
				if len(bytes.TrimSpace(line)) == 0 {
					continue
				}
				id, err := sp.AddTask(line)
				mu.Lock()
				switch {
				case errors.Is(err, manifest.ErrUnreadable):
					bad++
				case err == nil && info.ModTime.After(folded[id]):
					folded[id] = info.ModTime
				}
				mu.Unlock()
				if err != nil && !errors.Is(err, manifest.ErrUnreadable) {
					return err
				}
			}
			return nil
		})
		return gctx.Err()
	})
	if werr := g.Wait(); werr != nil {
		return nil, werr
	}
	if err != nil {
		return nil, fmt.Errorf("list parts: %w", err)
	}
	if bad > 0 {
		w.log.WarnContext(ctx, "lines of parts that do not decode: their records are read instead", "run_id", run, "lines", bad)
	}
	return folded, nil
}

// walker is a store that lists a page at a time (store.S3, store.Dir).
type walker interface {
	Walk(ctx context.Context, prefix string, fn func(store.Info) error) error
}

// walk calls fn with every object under prefix, a listing page at a time
// when the store can.
func (w *Worker) walk(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if wk, ok := w.cfg.Store.(walker); ok {
		return wk.Walk(ctx, prefix, fn)
	}
	infos, err := w.cfg.Store.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
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
