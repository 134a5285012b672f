package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
)

// Inspector is the part of asynq's Inspector that run control needs.
type Inspector interface {
	Queues() ([]string, error)
	ListArchivedTasks(queue string, opts ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	RunTask(queue, id string) error
	DeleteTask(queue, id string) error
}

// RecordStore reads and deletes task records.
type RecordStore interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Delete(ctx context.Context, key string) error
}

// Retry puts a run's failed tasks back in the queue (`likeness retry RUN`):
// asynq keeps every task that failed for good in its archive with its
// original payload; each of the run's archived tasks has its terminal state
// taken back, its record removed, and is run again with a fresh attempt
// history. Billing stops are lifted and the run is finalized again when the
// retried tasks end. It returns how many tasks were put back.
func Retry(ctx context.Context, insp Inspector, runs *runstate.Store, blobs RecordStore, run string) (int, error) {
	if _, err := runs.Get(ctx, run); err != nil {
		return 0, err
	}
	queues, err := insp.Queues()
	if err != nil {
		return 0, fmt.Errorf("list queues: %w", err)
	}
	prefix := task.Generate{RunID: run}.QueueID() // "gen:<run>:"
	n := 0
	for _, q := range queues {
		if !strings.HasPrefix(q, "gen:") {
			continue
		}
		for page := 1; ; page++ {
			infos, err := insp.ListArchivedTasks(q, asynq.PageSize(500), asynq.Page(page))
			if err != nil {
				return n, fmt.Errorf("list archived tasks of %s: %w", q, err)
			}
			if len(infos) == 0 {
				break
			}
			for _, info := range infos {
				if !strings.HasPrefix(info.ID, prefix) {
					continue
				}
				if err := reopen(ctx, runs, blobs, run, info); err != nil {
					return n, err
				}
				if err := insp.RunTask(q, info.ID); err != nil {
					return n, fmt.Errorf("run task %s again: %w", info.ID, err)
				}
				n++
			}
			if len(infos) < 500 {
				break
			}
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := runs.ResumeProviders(ctx, run); err != nil {
		return n, err
	}
	// The finalize task is kept after it ran, to refuse duplicates; the
	// retried run needs a new one.
	if err := insp.DeleteTask(task.QueueControl, task.Finalize{RunID: run}.QueueID()); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return n, fmt.Errorf("reset finalize: %w", err)
	}
	return n, nil
}

func reopen(ctx context.Context, runs *runstate.Store, blobs RecordStore, run string, info *asynq.TaskInfo) error {
	p, err := task.DecodeGenerate(info.Payload)
	if err != nil {
		return err
	}
	status, cost := manifest.Failed, 0.0
	key := store.RecordKey(run, p.TaskID)
	if raw, err := blobs.Get(ctx, key); err == nil {
		var rec manifest.Record
		if json.Unmarshal(raw, &rec) == nil {
			status, cost = rec.Status, rec.CostUSD
		}
	} else if !errors.Is(err, store.ErrNotExist) {
		return fmt.Errorf("read record %s: %w", key, err)
	}
	if err := runs.Reopen(ctx, run, p.TaskID, status, cost); err != nil {
		return err
	}
	if err := blobs.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete record %s: %w", key, err)
	}
	return nil
}
