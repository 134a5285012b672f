package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/likeness-run/likeness/pkg/imagecheck"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

// attempt makes one provider attempt, or resumes the one an earlier
// delivery paid for, and decides what follows from its result. Money moves
// in two steps: the list price is reserved before the call, and the
// attempt's record in Redis (RecordAttempt) charges what the provider
// billed, rejected outputs included, in the same step that frees the
// reservation.
func (w *Worker) attempt(ctx context.Context, log *slog.Logger, p task.Generate, ck string, st *runstate.TaskState, reserved runstate.Reservation) error {
	model, ok := w.cfg.Registry.Lookup(p.ModelRef)
	if !ok {
		return w.fail(ctx, p, ck, st.Attempts, provider.Input, fmt.Sprintf("model %q is not in this worker's registry", p.ModelRef))
	}
	gen, ok := w.cfg.Generators[model.Provider]
	if !ok {
		return w.fail(ctx, p, ck, st.Attempts, provider.Billing, model.Provider+": this worker has no credentials for the provider")
	}
	history := st.Attempts
	counted := history[min(st.Base, len(history)):]
	if class, msg, stop := w.stopAfter(p, counted); stop {
		// A delivery recorded a final failure and stopped before its record.
		return w.fail(ctx, p, ck, history, class, msg)
	}
	if st.Stopped != "" {
		return w.fail(ctx, p, ck, history, provider.Billing,
			model.Provider+": provider stopped for this run after a billing failure: "+st.Stopped)
	}
	_, outputSpent := spent(counted)
	n := len(history) + 1
	seed := spec.RetrySeed(p.Seed, outputSpent)
	resume, rseed, resuming := pendingOf(st, n)
	if resuming && !resume.CreatedAt.IsZero() && w.cfg.Now().Sub(resume.CreatedAt) > w.cfg.PendingMaxAge {
		// Older than any provider keeps a request running: whatever it
		// became, it cannot be read any more.
		log.WarnContext(ctx, "the open provider request is too old to resume; making a new one",
			"provider_request_id", resume.ID, "age", w.cfg.Now().Sub(resume.CreatedAt).Round(time.Second))
		if err := w.cfg.Runs.ClearPending(ctx, p.RunID, p.TaskID); err != nil {
			return err
		}
		resume, resuming = nil, false
	}
	if resuming {
		seed = rseed
	}

	ref, err := w.reference(ctx, p.RefKey)
	if err != nil {
		w.releaseIf(ctx, p, reserved)
		return fmt.Errorf("load reference %s: %w", p.RefKey, err)
	}
	refCfg, _, _ := image.DecodeConfig(bytes.NewReader(ref.Data))
	want := expectation(model, p.Params, refCfg.Width, refCfg.Height)
	var editImage, editMask *provider.Image
	if p.EditImageKey != "" {
		img, err := w.reference(ctx, p.EditImageKey)
		if err != nil {
			w.releaseIf(ctx, p, reserved)
			return fmt.Errorf("load edit image %s: %w", p.EditImageKey, err)
		}
		mask, err := w.reference(ctx, p.EditMaskKey)
		if err != nil {
			w.releaseIf(ctx, p, reserved)
			return fmt.Errorf("load edit mask %s: %w", p.EditMaskKey, err)
		}
		editImage, editMask = &img, &mask
		cfg, _, _ := image.DecodeConfig(bytes.NewReader(img.Data))
		want = editExpectation(model, cfg.Width, cfg.Height)
	}

	price := model.Pricing.For(p.Params)
	ok = reserved == runstate.Reserved // Begin reserved it for a fresh task
	if reserved == runstate.NotReserved {
		if ok, err = w.cfg.Runs.Reserve(ctx, p.RunID, p.TaskID, price); err != nil {
			return err
		}
	}
	if !ok {
		rec := w.baseRecord(p, ck)
		rec.Status = manifest.SkippedBudget
		rec.Error = fmt.Sprintf("budget: $%.2f for this output would pass the run's budget of $%.2f", price, st.BudgetUSD)
		fillTimes(rec, p, history, w.cfg.Now())
		log.InfoContext(ctx, "task skipped: over budget")
		return w.settle(ctx, rec)
	}

	lim := w.limitFor(model)
	lease, waited, err := w.acquire(ctx, lim, w.cfg.ID+"/"+p.RunID+"/"+p.TaskID)
	if err != nil {
		if !resuming {
			_ = w.cfg.Runs.Release(context.WithoutCancel(ctx), p.RunID, p.TaskID)
		}
		var we *waitError
		if errors.As(err, &we) {
			telemetry.Requeue(ctx, "limit", we.Wait) // a wait, not a failure
		}
		return err
	}
	lease.Keep(ctx)
	var opened atomic.Bool // a request was created and recorded in this delivery
	req := provider.Request{
		Model: model.Name, Prompt: p.PromptText, Character: p.Character, Reference: ref, Seed: seed,
		Width: want.Width, Height: want.Height, Params: p.Params, Image: editImage, Mask: editMask,
		Resume: resume,
		OnPending: func(pp provider.Pending) {
			opened.Store(true)
			w.recordPending(ctx, log, p, n, seed, pp)
			// The provider accepted a request: it is up. Close its
			// circuit now, not when the output arrives seconds later,
			// or a stray 5xx in between opens it again.
			w.report(ctx, lim, nil)
		},
	}
	start := w.cfg.Now()
	res, err := w.call(ctx, gen, model, req)
	if resuming && errors.Is(err, provider.ErrGone) {
		// The request an earlier delivery paid for is gone (its output
		// expired, or the provider forgot it): only a new one can help.
		log.WarnContext(ctx, "the provider request an earlier delivery made is gone; making a new one",
			"provider_request_id", resume.ID, "err", err)
		if cerr := w.cfg.Runs.ClearPending(ctx, p.RunID, p.TaskID); cerr != nil {
			lease.Release(ctx)
			return cerr
		}
		req.Resume = nil
		res, err = w.call(ctx, gen, model, req)
	}
	// The fleet's slot goes back and the limits learn the answer while
	// the output is checked and stored: two round trips off the task's
	// path. The delivery still waits for them before it ends.
	limitsDone := make(chan struct{})
	go func(err error) {
		defer close(limitsDone)
		lease.Release(ctx)
		w.report(ctx, lim, err)
	}(err)
	defer func() { <-limitsDone }()
	if err != nil && ctx.Err() != nil {
		// Shutdown or the task's deadline: not the provider's answer. The
		// reservation and any pending request stay for the redelivery.
		return fmt.Errorf("interrupted: %w", err)
	}
	if err != nil && (resuming || opened.Load()) && errors.Is(err, provider.ErrStillPending) {
		// The provider did not answer a poll or a download of a request
		// it accepted: the request may be running or done and paid for.
		// Keep it, spend no attempt, and read it again later.
		wait := max(provider.RetryAfterOf(err), pendingPollWait)
		log.WarnContext(ctx, "could not read the open provider request; it stays open", "wait", wait, "err", err)
		telemetry.Requeue(ctx, "pending", wait)
		return &waitError{Wait: wait, Err: err}
	}

	a := manifest.Attempt{N: n, Seed: seed, StartedAt: start,
		DurationMS: w.cfg.Now().Sub(start).Milliseconds(), LimitWaitMS: waited.Milliseconds()}
	if resume != nil {
		a.RequestID = resume.ID
	}
	metrics := w.cfg.Telemetry.Metrics()
	if err != nil {
		a.Class, a.Error = string(provider.ClassOf(err)), err.Error()
		a.CostUSD = provider.CostOf(err) // what the provider bills failures
		var pe *provider.Error
		if errors.As(err, &pe) && pe.RequestID != "" {
			a.RequestID = pe.RequestID
		}
		return w.afterFailure(ctx, log, p, ck, model, history, st.Base, a, err)
	}
	a.RequestID = res.RequestID
	metrics.ProviderLatency(ctx, model.Provider, model.Ref, res.Latency)
	out, err := w.check(ctx, model, res.Image.Data, want)
	if err != nil {
		// The provider made the output and bills it, whatever we think of it.
		a.Class, a.Error, a.CostUSD = string(provider.BadOutput), err.Error(), res.CostUSD
		var failure *imagecheck.Failure
		if errors.As(err, &failure) {
			a.Check = failure.Check
		}
		return w.afterFailure(ctx, log, p, ck, model, history, st.Base, a, err)
	}

	// Store the output before the attempt is recorded: until it is, the
	// pending request stays, and a redelivery downloads it again (never a
	// second request); once it is, a redelivery finds the stored output.
	a.OutputKey = store.OutputKey(p.RunID, p.Character, p.Model, p.Prompt, p.Variant, extension(res.Image.Data))
	a.CostUSD, a.RevisedPrompt = res.CostUSD, res.RevisedPrompt
	sctx, span := telemetry.Start(ctx, telemetry.SpanStore)
	err = w.cfg.Store.Put(sctx, a.OutputKey, res.Image.Data, contentType(res.Image.Data))
	telemetry.End(span, err)
	if err != nil {
		return fmt.Errorf("store output: %w", err)
	}
	// The attempt is recorded and the task marked settling in one step,
	// then its record is written and it is counted.
	history = append(history, a)
	rec := w.successRecord(ctx, p, ck, history, a, res.Image.Data, out, res.Latency)
	if _, err := w.cfg.Runs.RecordOutput(ctx, p.RunID, p.TaskID, a, settleTag(rec)); err != nil {
		return err
	}
	return w.writeAndFinish(ctx, rec)
}

// call runs the adapter inside its span.
func (w *Worker) call(ctx context.Context, gen provider.Generator, model provider.Model, req provider.Request) (*provider.Result, error) {
	pctx, span := telemetry.Start(ctx, telemetry.SpanProviderSubmit, telemetry.GenAI(model.Provider, model.Ref)...)
	res, err := gen.Generate(pctx, req)
	if res != nil {
		span.SetAttributes(telemetry.ResponseID(res.RequestID), telemetry.CostUSD(res.CostUSD))
	}
	telemetry.End(span, err)
	return res, err
}

// pendingPollWait is the least wait before an open request whose state
// the provider did not give is read again.
const pendingPollWait = 2 * time.Second

// recordPending keeps the provider request an attempt has open, so that a
// redelivery resumes it instead of paying for another. A Redis that does
// not answer for a few seconds loses that protection for this request
// only; the attempt goes on.
func (w *Worker) recordPending(ctx context.Context, log *slog.Logger, p task.Generate, n int, seed int64, pp provider.Pending) {
	raw, err := json.Marshal(pp)
	if err != nil {
		log.ErrorContext(ctx, "encode pending provider request", "err", err)
		return
	}
	pend := runstate.Pending{Attempt: n, Seed: seed, Request: raw}
	for i := 0; ; i++ {
		if err = w.cfg.Runs.SetPending(ctx, p.RunID, p.TaskID, pend); err == nil {
			return
		}
		if i == 4 || sleepCtx(ctx, 250*time.Millisecond) != nil {
			break
		}
	}
	log.WarnContext(ctx, "could not record the open provider request: a redelivery would pay for a new one",
		"provider_request_id", pp.ID, "err", err)
}

// afterFailure records a failed attempt (charging what the provider billed
// for it) and decides what follows: wait, retry, or the task's end.
func (w *Worker) afterFailure(ctx context.Context, log *slog.Logger, p task.Generate, ck string, model provider.Model,
	history []manifest.Attempt, base int, a manifest.Attempt, cause error) error {
	if _, err := w.cfg.Runs.RecordAttempt(ctx, p.RunID, p.TaskID, a); err != nil {
		return err
	}
	history = append(history, a)
	class := provider.Class(a.Class)
	metrics := w.cfg.Telemetry.Metrics()
	if class == provider.Rate {
		metrics.RateLimited(ctx, model.Provider)
	}
	if class == provider.Billing {
		if err := w.cfg.Runs.StopProvider(ctx, p.RunID, model.Provider, cause.Error()); err != nil {
			return err
		}
		log.ErrorContext(ctx, "billing failure: provider stopped for this run", "provider", model.Provider, "err", cause)
	}
	counted := history[min(base, len(history)):]
	if class, msg, stop := w.stopAfter(p, counted); stop {
		return w.fail(ctx, p, ck, history, class, msg)
	}
	if class == provider.Rate {
		wait := provider.RetryAfterOf(cause)
		if wait <= 0 {
			wait = time.Second // no hint: a second, as asynq schedules
		}
		log.InfoContext(ctx, "provider asked to wait", "wait", wait, "attempt", a.N)
		telemetry.Requeue(ctx, string(class), wait)
		return &waitError{Wait: wait, Err: cause}
	}
	log.WarnContext(ctx, "attempt failed, will retry", "class", a.Class, "attempt", a.N, "err", cause)
	telemetry.Retry(ctx, a.Class, 0)
	return &attemptError{Err: cause}
}

// systematicChecks are the output checks a model fails the same way for
// every seed when it fails them at all: it makes another size or aspect
// than asked. Blank frames and moderation come and go with the seed.
var systematicChecks = map[string]bool{"size": true, "aspect": true}

// stopAfter reports whether the task must end after the attempts counted
// against its retry budgets (the last one failed), with the class and
// reason of its failure.
func (w *Worker) stopAfter(p task.Generate, counted []manifest.Attempt) (provider.Class, string, bool) {
	last := lastAttempt(counted)
	if last == nil || last.Class == "" {
		return "", "", false
	}
	class := provider.Class(last.Class)
	if class == provider.BadOutput && systematicChecks[last.Check] {
		for _, a := range counted[:len(counted)-1] {
			if a.Class == last.Class && a.Check == last.Check {
				return class, fmt.Sprintf("the model failed the %s check for two seeds in a row, so further seeds would be paid for and rejected the same way (check the model's aspect_ratio/size parameters, or `likeness models %s`): %s",
					last.Check, p.ModelRef, last.Error), true
			}
		}
	}
	transientSpent, outputSpent := spent(counted)
	if decide(class, transientSpent, outputSpent, max(p.MaxAttempts, 1), p.OutputRetries) == terminal {
		return class, last.Error, true
	}
	return "", "", false
}

// spent counts the attempts charged to each retry budget.
func spent(history []manifest.Attempt) (transient, output int) {
	for _, a := range history {
		switch provider.Class(a.Class) {
		case provider.Safety, provider.BadOutput:
			output++
		case provider.Transient:
			transient++
		}
	}
	return transient, output
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
