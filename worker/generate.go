package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/trace"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

// pausedWait is how long a task of a paused run waits before it looks again.
const pausedWait = 2 * time.Second

// handleGenerate runs one (character, prompt, model, variant) task. Whatever
// happens, a delivery ends in one of four ways: the task reached its
// terminal state (nil: asynq forgets the task; its record and count are the
// truth), a provider attempt failed and will be retried (*attemptError, the
// only errors that count as failures), the task waits (*waitError), or
// likeness's own infrastructure failed (*infraError: retried with capped
// backoff, never spending an attempt, until the run's infra_retry_for).
func (w *Worker) handleGenerate(ctx context.Context, t *asynq.Task) error {
	p, err := task.DecodeGenerate(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	provName, _, _ := strings.Cut(p.ModelRef, ":")
	trace.SpanFromContext(ctx).SetAttributes(telemetry.RunID(p.RunID), telemetry.TaskID(p.TaskID),
		telemetry.Model(p.ModelRef), telemetry.Provider(provName))
	log := w.log.With("run_id", p.RunID, "task_id", p.TaskID, "model", p.Model)
	d := w.newDelivery(p.RunID, p.TaskID)
	defer d.end(ctx)
	ctx = withDelivery(ctx, d)
	var inline time.Duration
	for {
		err := w.steer(ctx, log, p, w.generate(ctx, log, p, provName, d))
		// asynq schedules retries in whole seconds: a sub-second wait
		// is spent here, holding the task's claim but no provider slot,
		// and the task goes on in this delivery. Longer waits go back
		// to the queue, freeing the worker's slot for other tasks.
		var we *waitError
		if !errors.As(err, &we) || we.requeue || we.Wait >= inlineBelow || inline+we.Wait > w.cfg.MaxInlineWait {
			return err
		}
		if serr := sleepCtx(ctx, we.Wait); serr != nil {
			return err
		}
		inline += we.Wait
	}
}

// inlineBelow bounds the waits a delivery spends inside its handler
// (within MaxInlineWait in all) instead of being requeued: asynq would
// round them up to a second.
const inlineBelow = time.Second

// generate decides, from the task's state in Redis, what this delivery
// does: nothing (already counted), count a record a crashed delivery wrote,
// record an output a crashed delivery paid for and stored, give up on
// infrastructure, skip, wait, reuse a stored output, or make an attempt.
// Its first round trip (runstate.Begin) claims the task, reads its state,
// reserves its price when it is fresh and asks the cache index about its
// output.
func (w *Worker) generate(ctx context.Context, log *slog.Logger, p task.Generate, provName string, d *delivery) error {
	ck := p.ContentKey()
	price := -1.0
	if model, ok := w.cfg.Registry.Lookup(p.ModelRef); ok {
		price = model.Pricing.For(p.Params)
	}
	b, err := w.cfg.Runs.Begin(ctx, runstate.BeginRequest{
		Run: p.RunID, Task: p.TaskID, Provider: provName, Holder: d.holder, ClaimTTL: w.cfg.ClaimTTL,
		PriceUSD: price, ContentKey: ck, CacheStore: w.storeName,
	})
	if err != nil {
		return err
	}
	if !b.Claimed {
		return &waitError{Wait: claimedWait, Err: errClaimed, requeue: true}
	}
	d.claimed(ctx)
	st := b.State
	if st.Status != "" {
		// A redelivery of a task that was counted: nothing to do but make
		// sure a completed run has its fan-in queued.
		log.DebugContext(ctx, "task already finished", "status", st.Status)
		if st.Total > 0 && st.Done >= st.Total {
			return w.enqueueFinalize(ctx, p.RunID)
		}
		return nil
	}
	if st.Settling != "" {
		rec, err := w.readRecord(ctx, p.RunID, p.TaskID)
		switch {
		case err == nil && rec.ContentKey == ck && settleTag(rec) == st.Settling:
			return w.finish(ctx, rec)
		case err != nil && !isNotExist(err):
			return err
		}
	}
	history := st.Attempts
	if last := lastAttempt(history); last != nil && last.Class == "" && last.OutputKey != "" {
		// An earlier delivery paid for an output and stored it, then
		// stopped before its record: finish from the stored output.
		return w.recordStored(ctx, p, ck, history, *last)
	}
	if !st.InfraSince.IsZero() && w.cfg.Now().Sub(st.InfraSince) > st.InfraRetryFor {
		return w.fail(ctx, p, ck, history, provider.Infra,
			fmt.Sprintf("infrastructure faults for %s, past the run's infra_retry_for of %s; the last: %s",
				w.cfg.Now().Sub(st.InfraSince).Round(time.Second), st.InfraRetryFor, st.InfraErr))
	}
	if st.Canceled {
		rec := w.baseRecord(p, ck)
		rec.Status = manifest.SkippedCanceled
		rec.Error = "run canceled"
		fillTimes(rec, p, history, w.cfg.Now())
		return w.settle(ctx, rec)
	}
	if st.Paused {
		return &waitError{Wait: pausedWait, Err: errPaused, requeue: true}
	}
	if len(history) == 0 && st.Pending == nil {
		ref, hit := b.Cache, b.CacheHit
		if !b.CacheIndexed || (!hit && !w.index.seen.Load()) {
			// A miss proves nothing until the index is built for this
			// bucket: build it (or wait for the worker that does), then
			// ask again (see indexGate.seen).
			if !b.CacheIndexed {
				if err := w.awaitCacheIndex(ctx); err != nil {
					w.releaseIf(ctx, p, b.Reservation)
					return err
				}
			}
			w.index.seen.Store(true)
			if ref, hit, err = w.cfg.Runs.CacheLookup(ctx, ck); err != nil {
				w.releaseIf(ctx, p, b.Reservation)
				return err
			}
		}
		if hit {
			if rec, ok, err := w.fromCache(ctx, p, ck, ref); err != nil {
				w.releaseIf(ctx, p, b.Reservation)
				return err
			} else if ok {
				log.InfoContext(ctx, "output reused from cache", "output_key", rec.OutputKey)
				return w.settle(ctx, rec)
			}
		}
	}
	return w.attempt(ctx, log, p, ck, st, b.Reservation)
}

// releaseIf frees the reservation Begin took when the delivery ends
// before a provider call without counting the task.
func (w *Worker) releaseIf(ctx context.Context, p task.Generate, r runstate.Reservation) {
	if r == runstate.Reserved {
		_ = w.cfg.Runs.Release(context.WithoutCancel(ctx), p.RunID, p.TaskID)
	}
}

var errPaused = errors.New("run paused")

// steer turns what generate returned into what asynq should do, and notes
// infrastructure faults against the task's wall-clock allowance.
func (w *Worker) steer(ctx context.Context, log *slog.Logger, p task.Generate, err error) error {
	var we *waitError
	var ae *attemptError
	switch {
	case err == nil, errors.As(err, &we), errors.As(err, &ae), errors.Is(err, asynq.SkipRetry):
		return err
	}
	// Anything else is likeness's own infrastructure (Redis, the store,
	// the queue, a deadline): the provider did not answer it, so no
	// attempt is spent. Note when it began, if Redis lets us.
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	since, nerr := w.cfg.Runs.NoteInfra(nctx, p.RunID, p.TaskID, err)
	if nerr != nil {
		since = w.cfg.Now()
	}
	out := &infraError{Err: err, For: w.cfg.Now().Sub(since)}
	log.WarnContext(ctx, "infrastructure fault: task will be retried without spending an attempt",
		"failing_for", out.For.Round(time.Millisecond), "err", err)
	return out
}

func lastAttempt(h []manifest.Attempt) *manifest.Attempt {
	if len(h) == 0 {
		return nil
	}
	return &h[len(h)-1]
}

// pendingOf returns the provider request attempt n has open, if the task
// state holds one for it.
func pendingOf(st *runstate.TaskState, n int) (*provider.Pending, int64, bool) {
	if st.Pending == nil || st.Pending.Attempt != n {
		return nil, 0, false
	}
	var pp provider.Pending
	if err := jsonUnmarshal(st.Pending.Request, &pp); err != nil || pp.ID == "" {
		return nil, 0, false
	}
	return &pp, st.Pending.Seed, true
}
