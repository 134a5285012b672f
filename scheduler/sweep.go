package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/task"
)

// FinalizeInspector is the part of *asynq.Inspector a sweep uses.
type FinalizeInspector interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
	DeleteTask(queue, id string) error
}

// Sweeper finds runs that stopped short of their end and moves them on.
// Normally the task that completes a run enqueues its fan-in; a worker that
// dies between counting the last task and enqueueing, or a finalize that
// used up its retries while the bucket was down, leaves a run whose every
// task is done but which has no manifest. A sweep enqueues that run's
// finalize again. It also reports runs whose submit stopped half-way (the
// producer died while enqueueing): only the submitter has the spec's files,
// so those are reported for resubmission, which resumes them.
//
// A sweep is safe to run from any number of processes at once: the
// finalize task's id refuses duplicates. Every worker and the scheduler
// run Loop; with Lock set, one of them sweeps per period.
type Sweeper struct {
	Runs      *runstate.Store
	Queue     Enqueuer
	Inspector FinalizeInspector
	// Lock, when set, is the Redis that Loop takes a lock in, so a fleet
	// of sweepers sweeps once per period, not once per process.
	Lock redis.UniversalClient
	// ID names this sweeper in the lock. Default "sweeper".
	ID string
	// Grace is how long a submit may take before its run counts as
	// stopped half-way. Default 10 minutes.
	Grace time.Duration
	// Limit is how many of the newest runs a sweep looks at. Default 1000.
	Limit int64
	// Logger receives what the sweep does. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// SweepReport is what one sweep found and did.
type SweepReport struct {
	// Checked is how many runs were looked at.
	Checked int `json:"checked"`
	// Refinalized are the complete runs whose finalize was enqueued again.
	Refinalized []string `json:"refinalized,omitempty"`
	// HalfSubmitted are runs whose submit stopped before every task was
	// enqueued, longer than Grace ago: resubmit their spec to resume.
	HalfSubmitted []string `json:"half_submitted,omitempty"`
}

// sweepLockKey is the Redis key whose holder sweeps this period.
const sweepLockKey = "likeness:sweep:lock"

// Loop sweeps every period until ctx ends; with Lock set, only when it
// takes the fleet's lock for the period. Errors are logged, and the next
// period tries again.
func (s *Sweeper) Loop(ctx context.Context, every time.Duration) {
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if s.takeLock(ctx, every) {
			if _, err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				log.ErrorContext(ctx, "sweep failed; the next one tries again", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// takeLock reports whether this sweeper sweeps this period.
func (s *Sweeper) takeLock(ctx context.Context, every time.Duration) bool {
	if s.Lock == nil {
		return true
	}
	id := s.ID
	if id == "" {
		id = "sweeper"
	}
	ok, err := s.Lock.SetNX(ctx, sweepLockKey, id, every*9/10).Result()
	return err == nil && ok
}

// Sweep looks at the newest runs once.
func (s *Sweeper) Sweep(ctx context.Context) (SweepReport, error) {
	grace, limit, log, now := s.Grace, s.Limit, s.Logger, s.Now
	if grace <= 0 {
		grace = 10 * time.Minute
	}
	if limit <= 0 {
		limit = 1000
	}
	if log == nil {
		log = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	var rep SweepReport
	ids, err := s.Runs.List(ctx, limit)
	if err != nil {
		return rep, err
	}
	for _, id := range ids {
		st, err := s.Runs.Get(ctx, id)
		if errors.Is(err, runstate.ErrNotFound) {
			continue // expired between List and Get
		}
		if err != nil {
			return rep, err
		}
		rep.Checked++
		switch {
		case st.Complete():
			// Every task is done, however the submit ended; only the
			// fan-in can be missing.
			if st.Finalized > 0 {
				continue
			}
			again, err := s.refinalize(ctx, id)
			if err != nil {
				return rep, err
			}
			if again {
				rep.Refinalized = append(rep.Refinalized, id)
				log.InfoContext(ctx, "complete run had no finalize in the queue: enqueued it again", "run_id", id)
			}
		case !st.Enqueued && now().Sub(st.CreatedAt) > grace:
			rep.HalfSubmitted = append(rep.HalfSubmitted, id)
			log.WarnContext(ctx, "run stopped half-way through its submit: submit the same spec again to resume it",
				"run_id", id, "created_at", st.CreatedAt)
		}
	}
	return rep, nil
}

// refinalize enqueues run's finalize unless one is waiting or running. It
// returns false when there was nothing to do.
func (s *Sweeper) refinalize(ctx context.Context, run string) (bool, error) {
	id := task.Finalize{RunID: run}.QueueID()
	info, err := s.Inspector.GetTaskInfo(task.QueueControl, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound):
	case err != nil:
		return false, fmt.Errorf("finalize task of %s: %w", run, err)
	case info.State == asynq.TaskStateArchived || info.State == asynq.TaskStateCompleted:
		// Out of retries, or done without marking the run: run it anew.
		if err := s.Inspector.DeleteTask(task.QueueControl, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return false, fmt.Errorf("reset finalize of %s: %w", run, err)
		}
	default:
		return false, nil // pending, scheduled, active or retrying: on its way
	}
	t, opts := task.NewFinalize(run, nil)
	if _, err := s.Queue.EnqueueContext(ctx, t, opts...); err != nil {
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			return false, nil // the completing worker got there first
		}
		return false, fmt.Errorf("enqueue finalize of %s: %w", run, err)
	}
	return true, nil
}
