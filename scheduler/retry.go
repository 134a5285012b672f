package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
)

// TaskDeleter removes a task from the queue; *asynq.Inspector satisfies it.
type TaskDeleter interface {
	DeleteTask(queue, id string) error
}

// RecordStore reads task records.
type RecordStore interface {
	Get(ctx context.Context, key string) ([]byte, error)
}

// redoStatuses are the terminal states a retry or a resubmission redoes.
var redoStatuses = []manifest.Status{manifest.Failed, manifest.SkippedBudget, manifest.SkippedCanceled}

// Retry puts a run's failed and skipped tasks back in the queue (`likeness
// retry RUN`). It finds them in the run's own state in Redis, not in the
// queue's archive (a finished task leaves the queue), and rebuilds each
// task from its record. Billing stops and a cancel are lifted first, so the
// retried tasks do not fail again on them; each task gets a fresh queue
// task and fresh retry budgets, while its earlier attempts stay in its
// history and cost. The run is finalized again when they end, and that
// finalization sends its own webhook. It returns how many tasks were put
// back; running it again while they work puts back nothing.
func Retry(ctx context.Context, queue Enqueuer, tasks TaskDeleter, runs *runstate.Store, blobs RecordStore, run string) (int, error) {
	st, err := runs.Get(ctx, run)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	return redo(ctx, redoer{queue: queue, tasks: tasks, runs: runs, blobs: blobs}, run, -1,
		func(id string, rec *manifest.Record) (task.Generate, bool) {
			return task.Generate{
				RunID: run, TaskID: id, Character: rec.Character, Prompt: rec.Prompt, PromptText: rec.PromptText,
				Model: rec.Model, ModelRef: rec.ModelRef, Params: rec.Params, Variant: rec.Variant, Seed: rec.BaseSeed,
				RefKey: rec.ReferenceKey, EditImageKey: rec.EditImageKey, EditMaskKey: rec.EditMaskKey,
				OutputRetries: st.OutputRetries, MaxAttempts: st.MaxAttempts, Tags: st.Tags, EnqueuedAt: now,
			}, true
		})
}

// resubmit redoes the failed and skipped tasks of a run whose spec was
// submitted again, with the spec's (possibly larger) budget.
func (p *Producer) resubmit(ctx context.Context, s *spec.Spec, runID string, refKeys map[string]string, edits map[string][2]string, now time.Time) (int, error) {
	if p.cfg.Tasks == nil {
		return 0, nil
	}
	byID := map[string]spec.Task{}
	for _, t := range s.Expand() {
		byID[t.ID] = t
	}
	n, err := redo(ctx, redoer{queue: p.cfg.Queue, tasks: p.cfg.Tasks, runs: p.cfg.Runs, blobs: p.cfg.Store, timeout: p.cfg.TaskTimeout},
		runID, s.BudgetUSD, func(id string, _ *manifest.Record) (task.Generate, bool) {
			t, ok := byID[id]
			if !ok {
				return task.Generate{}, false
			}
			return payloadOf(s, runID, t, refKeys, edits, now), true
		})
	if n > 0 {
		p.cfg.Logger.InfoContext(ctx, "spec submitted again: failed and skipped tasks redone", "run_id", runID, "tasks", n)
	}
	return n, err
}

// redoer holds what redoing tasks needs.
type redoer struct {
	queue   Enqueuer
	tasks   TaskDeleter
	runs    *runstate.Store
	blobs   RecordStore
	timeout time.Duration
}

// redo reopens the run's failed and skipped tasks and enqueues each again
// with the payload payload gives it (false: leave it), after lifting the
// run's billing stops and cancel and setting its budget (budgetUSD < 0:
// keep it). Tasks a previous redo reopened but did not enqueue (it was
// cut off) are enqueued too.
func redo(ctx context.Context, r redoer, run string, budgetUSD float64, payload func(string, *manifest.Record) (task.Generate, bool)) (int, error) {
	if r.timeout <= 0 {
		r.timeout = 30 * time.Minute
	}
	if err := r.runs.ResumeProviders(ctx, run); err != nil {
		return 0, err
	}
	if err := r.runs.Revive(ctx, run, budgetUSD); err != nil {
		return 0, err
	}
	ended, err := r.runs.Tasks(ctx, run, redoStatuses...)
	if err != nil {
		return 0, err
	}
	open, err := r.runs.Reopened(ctx, run)
	if err != nil {
		return 0, err
	}
	if len(ended)+len(open) == 0 {
		return 0, nil
	}
	// The finalize task is kept after it ran, to refuse duplicates; it must
	// be gone before a reopened task can complete the run again.
	fin := task.Finalize{RunID: run}.QueueID()
	if err := r.tasks.DeleteTask(task.QueueControl, fin); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
		return 0, fmt.Errorf("reset finalize of %s: %w", run, err)
	}
	n := 0
	for i, id := range append(ended, open...) {
		rec, err := readRecord(ctx, r.blobs, run, id)
		if err != nil {
			return n, err
		}
		g, ok := payload(id, rec)
		if !ok {
			continue
		}
		if i < len(ended) {
			if _, err := r.runs.Reopen(ctx, run, id, rec.AttemptLog); err != nil {
				return n, err
			}
		}
		ok, err = r.enqueue(ctx, g)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// enqueue puts a reopened task in the queue. A task of the same id left in
// the queue's archive by an older worker is removed first.
func (r redoer) enqueue(ctx context.Context, g task.Generate) (bool, error) {
	t, opts, err := task.NewGenerate(g, nil, r.timeout)
	if err != nil {
		return false, err
	}
	for try := 0; ; try++ {
		_, err = r.queue.EnqueueContext(ctx, t, opts...)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, asynq.ErrTaskIDConflict) && try == 0:
			prov, _, _ := strings.Cut(g.ModelRef, ":")
			_ = r.tasks.DeleteTask(task.QueueFor(prov), g.QueueID()) // an active task refuses: it is on its way
		case errors.Is(err, asynq.ErrTaskIDConflict):
			return false, nil
		default:
			return false, fmt.Errorf("enqueue task %s again: %w", g.TaskID, err)
		}
	}
}

func readRecord(ctx context.Context, blobs RecordStore, run, id string) (*manifest.Record, error) {
	key := store.RecordKey(run, id)
	raw, err := blobs.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read record %s: %w", key, err)
	}
	var rec manifest.Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("decode record %s: %w", key, err)
	}
	return &rec, nil
}
