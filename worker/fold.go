package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
)

// Folding a running run's records into parts (see runstate's fold.go):
// finishStored pushes each record onto the run's fold list and enqueues a
// run:fold task every FoldSize records; handleFold, on any worker, writes
// the list's full batches as parts/<seq>.jsonl objects, which the fan-in
// reads instead of the records they hold.

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
	defer w.cfg.Runs.UnlockFold(context.WithoutCancel(ctx), p.RunID, w.cfg.ID)
	n, err := w.fold(ctx, p.RunID)
	if n > 0 {
		w.log.DebugContext(ctx, "records folded", "run_id", p.RunID, "parts", n)
	}
	return err
}

// fold writes run's fold list's full batches as parts and returns how many
// it wrote. Each part is stored before its lines leave the list: a crash
// between the two folds them again into the next part, and the fan-in
// keeps one record per task.
func (w *Worker) fold(ctx context.Context, run string) (int, error) {
	size := w.cfg.Runs.FoldSize()
	if size <= 0 {
		return 0, nil
	}
	for parts := 0; ; parts++ {
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
		if err := w.cfg.Runs.TrimFold(ctx, run, len(lines)); err != nil {
			return parts + 1, err
		}
	}
}
