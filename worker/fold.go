package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/artifact"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
)

// Folding a running run's records into parts (see runstate's fold.go):
// finishStored pushes each record onto the run's fold list and enqueues a
// run:fold task every FoldSize records; handleFold, on any worker, writes
// the list's full batches as parts/<seq>.jsonl objects, which the fan-in
// reads instead of the records they hold, and packs the batch's sheet
// cells (artifact.PackCells), which the fan-in reads instead of an image
// per cell.

// enqueueFold enqueues run's fold task for batch. A fold that cannot be
// queued is logged, not failed: the task is counted, and the fan-in reads
// the records the fold would have held, or the next batch's fold takes
// them.
func (w *Worker) enqueueFold(ctx context.Context, run string, batch int64) {
	t, opts := task.NewFold(run, batch)
	if _, err := w.client.EnqueueContext(ctx, t, opts...); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		w.log.WarnContext(ctx, "fold task not queued; the fan-in will read these records one by one",
			"run_id", run, "batch", batch, "err", err)
	}
}

// handleFold folds every full batch on the run's fold list into a part,
// under the run's fold lock: a second fold of the run finding the lock
// taken returns, since the holder folds every full batch it finds.
func (w *Worker) handleFold(ctx context.Context, t *asynq.Task) error {
	var p task.Fold
	if err := task.Decode(t.Type(), t.Payload(), &p); err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	ok, err := w.cfg.Runs.LockFold(ctx, p.RunID, w.cfg.ID)
	if err != nil || !ok {
		return err
	}
	parts, err := w.fold(ctx, p.RunID)
	w.cfg.Runs.UnlockFold(context.WithoutCancel(ctx), p.RunID, w.cfg.ID)
	if len(parts) > 0 {
		w.log.DebugContext(ctx, "records folded", "run_id", p.RunID, "parts", len(parts))
	}
	// The parts' sheet cells are packed outside the lock: the next fold
	// need not wait for their thumbnails.
	for _, part := range parts {
		w.packCells(ctx, p.RunID, part)
	}
	return err
}

// foldedPart is a part a fold wrote: its number and its lines.
type foldedPart struct {
	seq   int64
	lines [][]byte
}

// fold writes run's fold list's full batches as parts and returns them.
// Each part is stored before its lines leave the list: a crash between
// the two folds them again into the next part, and the fan-in keeps one
// record per task.
func (w *Worker) fold(ctx context.Context, run string) ([]foldedPart, error) {
	size := w.cfg.Runs.FoldSize()
	if size <= 0 {
		return nil, nil
	}
	var parts []foldedPart
	for {
		lines, err := w.cfg.Runs.FoldLines(ctx, run, size)
		if err != nil || len(lines) < size {
			return parts, err
		}
		seq, err := w.cfg.Runs.NextPart(ctx, run)
		if err != nil {
			return parts, err
		}
		body := append(bytes.Join(lines, []byte("\n")), '\n')
		key := store.PartKey(run, seq)
		if err := w.cfg.Store.Put(ctx, key, body, "application/x-ndjson"); err != nil {
			return parts, fmt.Errorf("store part %s: %w", key, err)
		}
		parts = append(parts, foldedPart{seq, lines})
		if err := w.cfg.Runs.TrimFold(ctx, run, len(lines)); err != nil {
			return parts, err
		}
	}
}

// packCells stores the sheet cells of a part at store.CellsKey, making
// the thumbnails they show (see artifact.PackCells), so that the fan-in
// reads one pack instead of an image per cell. It does its best: a pack
// not made is logged, and the fan-in reads those cells one by one.
func (w *Worker) packCells(ctx context.Context, run string, part foldedPart) {
	records := make([]manifest.Record, 0, len(part.lines))
	for _, line := range part.lines {
		var r manifest.Record
		if json.Unmarshal(line, &r) == nil {
			records = append(records, r)
		}
	}
	st, err := w.cfg.Runs.Get(ctx, run)
	if err != nil {
		w.log.WarnContext(ctx, "sheet cells not packed: run state unreadable", "run_id", run, "part", part.seq, "err", err)
		return
	}
	cfg := artifact.Config{Store: w.cfg.Store, Logger: w.log}
	var pack bytes.Buffer
	n, err := artifact.PackCells(ctx, cfg, run, records, artifact.SheetsOf(ctx, cfg, run, st.SpecKey), &pack)
	if err == nil && n > 0 {
		err = w.cfg.Store.Put(ctx, store.CellsKey(run, part.seq), pack.Bytes(), "application/x-tar")
	}
	if err != nil {
		w.log.WarnContext(ctx, "sheet cells not packed: the fan-in reads them one by one", "run_id", run, "part", part.seq, "err", err)
	}
}
