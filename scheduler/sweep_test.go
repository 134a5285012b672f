package scheduler_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/scheduler"
)

// TestSweep (real Redis): a complete run with no finalize queued gets one,
// once; a finalize that ran out of retries is replaced; a run still being
// worked is left alone; a submit that stopped half-way is reported.
func TestSweep(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { rdb.Close() })
	opt := asynq.RedisClientOpt{Addr: addr, DB: db}
	q := asynq.NewClient(opt)
	t.Cleanup(func() { q.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { insp.Close() })
	ctx := context.Background()
	now := time.Now()
	runs := runstate.New(rdb, runstate.Config{})

	mk := func(id string, total, done int, enqueued bool) {
		t.Helper()
		if _, err := runs.Create(ctx, runstate.Run{ID: id, Name: id, Total: total, CreatedAt: now.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if enqueued {
			if err := runs.MarkEnqueued(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		for i := range done {
			if _, err := runs.Complete(ctx, id, string(rune('a'+i)), manifest.Succeeded, false, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("stuck", 2, 2, true)     // complete, no finalize
	mk("working", 3, 1, true)   // tasks left
	mk("halfway", 4, 0, false)  // submit died an hour ago
	mk("finalized", 1, 1, true) // done and reported
	if _, err := runs.MarkFinalized(ctx, "finalized"); err != nil {
		t.Fatal(err)
	}

	sw := &scheduler.Sweeper{Runs: runs, Queue: q, Inspector: insp, Grace: 10 * time.Minute}
	rep, err := sw.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checked != 4 || !slices.Equal(rep.Refinalized, []string{"stuck"}) || !slices.Equal(rep.HalfSubmitted, []string{"halfway"}) {
		t.Fatalf("first sweep: %+v", rep)
	}
	finID := task.Finalize{RunID: "stuck"}.QueueID()
	info, err := insp.GetTaskInfo(task.QueueControl, finID)
	if err != nil || info.State != asynq.TaskStatePending || info.Type != task.TypeFinalize {
		t.Fatalf("finalize of the stuck run: %+v, %v", info, err)
	}

	// Queued and not yet run: a second sweep leaves it be.
	if rep, err = sw.Sweep(ctx); err != nil || len(rep.Refinalized) != 0 {
		t.Fatalf("second sweep: %+v, %v", rep, err)
	}

	// The finalize used up its retries: the next sweep queues a new one.
	if err := insp.ArchiveTask(task.QueueControl, finID); err != nil {
		t.Fatal(err)
	}
	if rep, err = sw.Sweep(ctx); err != nil || !slices.Equal(rep.Refinalized, []string{"stuck"}) {
		t.Fatalf("sweep after the finalize was archived: %+v, %v", rep, err)
	}
	if info, err = insp.GetTaskInfo(task.QueueControl, finID); err != nil || info.State != asynq.TaskStatePending {
		t.Fatalf("finalize after the sweep: %+v, %v", info, err)
	}
}
