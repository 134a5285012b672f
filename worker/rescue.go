package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/task"
)

// Rescue of tasks a killed worker left behind.
//
// asynq hands a task back to the queue only after its lease has expired
// and its recoverer has looked (30 s lease, a 30 s margin, a scan every
// minute: one to two minutes after the worker died). A fleet that loses a
// worker every few seconds would spend most of a run waiting on that. So
// every delivery claims its task in Redis for ClaimTTL and keeps the claim
// while it works; every RescueEvery one worker of the fleet lists the
// queues' active tasks, and a task that stays active with no claim for
// RescueAfter is enqueued again under a new queue id. Its state in Redis
// (attempts, the provider request it has open) makes the new delivery
// resume, not repeat, the work; when asynq finally recovers the stranded
// original, that delivery finds the task counted and does nothing.

var errClaimed = errors.New("another delivery of the task is working on it")

// claimedWait is how long a delivery that finds its task claimed waits.
const claimedWait = 3 * time.Second

// claim makes this delivery the one working on run's task (or its
// finalize, with taskID finalizeSlot) and keeps the claim until release is
// called. ok is false when a live delivery already holds it.
func (w *Worker) claim(ctx context.Context, run, taskID string) (release func(), ok bool, err error) {
	holder := fmt.Sprintf("%s/%d", w.cfg.ID, w.deliveries.Add(1))
	ok, err = w.cfg.Runs.Claim(ctx, run, taskID, holder, w.cfg.ClaimTTL)
	if err != nil || !ok {
		return nil, ok, err
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(w.cfg.ClaimTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.ClaimTTL/3)
				_, _ = w.cfg.Runs.KeepClaim(kctx, run, taskID, holder, w.cfg.ClaimTTL) // a missed beat only shortens the claim
				cancel()
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = w.cfg.Runs.ReleaseClaim(rctx, run, taskID, holder) // it lapses by itself otherwise
	}, true, nil
}

// delivery is one delivery of a generation task: its claim, taken by the
// task's first round trip (runstate.Begin), kept alive while it works, and
// dropped by the terminal count (runstate.Finish) or at its end.
type delivery struct {
	w         *Worker
	run, task string
	holder    string
	stop      chan struct{} // ends the heartbeat; nil until the claim is taken
	done      chan struct{}
	released  bool // the terminal count dropped the claim
}

func (w *Worker) newDelivery(run, taskID string) *delivery {
	return &delivery{w: w, run: run, task: taskID, holder: fmt.Sprintf("%s/%d", w.cfg.ID, w.deliveries.Add(1))}
}

// claimed starts the heartbeat of a claim Begin took (once).
func (d *delivery) claimed(ctx context.Context) {
	if d.stop != nil {
		return
	}
	d.stop, d.done = make(chan struct{}), make(chan struct{})
	ttl := d.w.cfg.ClaimTTL
	go func() {
		defer close(d.done)
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-d.stop:
				return
			case <-t.C:
				kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl/3)
				_, _ = d.w.cfg.Runs.KeepClaim(kctx, d.run, d.task, d.holder, ttl) // a missed beat only shortens the claim
				cancel()
			}
		}
	}()
}

// end stops the heartbeat and drops the claim, unless the terminal count
// dropped it already.
func (d *delivery) end(ctx context.Context) {
	if d.stop == nil {
		return
	}
	close(d.stop)
	<-d.done
	if d.released {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = d.w.cfg.Runs.ReleaseClaim(rctx, d.run, d.task, d.holder) // it lapses by itself otherwise
}

type deliveryKey struct{}

func withDelivery(ctx context.Context, d *delivery) context.Context {
	return context.WithValue(ctx, deliveryKey{}, d)
}

func deliveryOf(ctx context.Context) *delivery {
	d, _ := ctx.Value(deliveryKey{}).(*delivery)
	return d
}

// rescueLoop runs until ctx ends; see the section comment.
func (w *Worker) rescueLoop(ctx context.Context) {
	insp := asynq.NewInspector(w.cfg.Redis)
	defer insp.Close()
	t := time.NewTicker(w.cfg.RescueEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ok, err := w.cfg.Runs.TryLock(ctx, "rescue", w.cfg.ID, w.cfg.RescueEvery*9/10); err != nil || !ok {
			continue
		}
		if n, err := w.rescue(ctx, insp); err != nil && ctx.Err() == nil {
			w.log.WarnContext(ctx, "rescue scan failed; the next one tries again", "err", err)
		} else if n > 0 {
			w.log.InfoContext(ctx, "tasks left by a dead worker enqueued again", "tasks", n)
		}
	}
}

// rescue scans the active tasks of the queues this worker serves once and
// enqueues again those unclaimed for RescueAfter. It returns how many.
func (w *Worker) rescue(ctx context.Context, insp *asynq.Inspector) (int, error) {
	n := 0
	for queue := range w.Queues() {
		for page := 1; ; page++ {
			infos, err := insp.ListActiveTasks(queue, asynq.PageSize(500), asynq.Page(page))
			if errors.Is(err, asynq.ErrQueueNotFound) {
				break
			}
			if err != nil {
				return n, fmt.Errorf("list active tasks of %s: %w", queue, err)
			}
			for _, info := range infos {
				ok, err := w.rescueOne(ctx, info)
				if err != nil {
					return n, err
				}
				if ok {
					n++
				}
			}
			if len(infos) < 500 {
				break
			}
		}
	}
	return n, nil
}

func (w *Worker) rescueOne(ctx context.Context, info *asynq.TaskInfo) (bool, error) {
	run, slot, ok := claimOf(info)
	if !ok {
		return false, nil
	}
	claimed, err := w.cfg.Runs.Claimed(ctx, run, slot)
	if err != nil {
		return false, err
	}
	if claimed {
		return false, w.cfg.Runs.Unsuspect(ctx, info.ID)
	}
	first, err := w.cfg.Runs.Suspect(ctx, info.ID)
	if err != nil || w.cfg.Now().Sub(first) < w.cfg.RescueAfter {
		return false, err
	}
	if fresh, err := w.cfg.Runs.MarkOnce(ctx, "rescued:"+info.ID, time.Hour); err != nil || !fresh {
		return false, err
	}
	t := asynq.NewTaskWithHeaders(info.Type, info.Payload, info.Headers)
	opts := []asynq.Option{asynq.Queue(info.Queue), asynq.MaxRetry(info.MaxRetry),
		asynq.TaskID(rescuedID(info.ID, w.cfg.Now())), asynq.Retention(info.Retention)}
	if info.Timeout > 0 {
		opts = append(opts, asynq.Timeout(info.Timeout))
	}
	if _, err := w.client.EnqueueContext(ctx, t, opts...); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, fmt.Errorf("enqueue rescued task %s: %w", info.ID, err)
	}
	w.log.InfoContext(ctx, "task stranded by a dead worker enqueued again", "run_id", run, "task", slot, "queue_task_id", info.ID)
	return true, w.cfg.Runs.Unsuspect(ctx, info.ID)
}

// claimOf returns the run and claim slot of a generation or finalize task.
func claimOf(info *asynq.TaskInfo) (run, slot string, ok bool) {
	switch info.Type {
	case task.TypeGenerate:
		p, err := task.DecodeGenerate(info.Payload)
		return p.RunID, p.TaskID, err == nil
	case task.TypeFinalize:
		var p task.Finalize
		err := task.Decode(info.Type, info.Payload, &p)
		return p.RunID, finalizeSlot, err == nil
	}
	return "", "", false
}

// rescuedID is the queue id of a rescued copy of the task with id.
func rescuedID(id string, now time.Time) string {
	base, _, _ := strings.Cut(id, ":rescue:")
	return fmt.Sprintf("%s:rescue:%d", base, now.UnixMilli())
}
