package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/trace"

	"github.com/likeness-run/likeness/pkg/imagecheck"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

// handleGenerate runs one (character, prompt, model, variant) task.
func (w *Worker) handleGenerate(ctx context.Context, t *asynq.Task) error {
	p, err := task.DecodeGenerate(t.Payload())
	if err != nil {
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	log := w.log.With("run_id", p.RunID, "task_id", p.TaskID, "model", p.Model)
	ck := p.ContentKey()
	provName, _, _ := strings.Cut(p.ModelRef, ":")
	trace.SpanFromContext(ctx).SetAttributes(telemetry.RunID(p.RunID), telemetry.TaskID(p.TaskID),
		telemetry.Model(p.ModelRef), telemetry.Provider(provName))

	// A terminal record for this exact request means a previous delivery
	// finished the work: count it (idempotently) and stop.
	if rec, err := w.readRecord(ctx, p.RunID, p.TaskID); err == nil && rec.ContentKey == ck {
		// Counted as reused: this delivery paid for nothing.
		log.DebugContext(ctx, "task already finished", "status", rec.Status)
		return w.finish(ctx, rec, rec.Status == manifest.Succeeded)
	} else if err != nil && !errors.Is(err, store.ErrNotExist) {
		return fmt.Errorf("read record: %w", err)
	}

	canceled, err := w.cfg.Runs.Canceled(ctx, p.RunID)
	if err != nil {
		return err
	}
	if canceled {
		rec := w.baseRecord(p, ck)
		rec.Status = manifest.SkippedCanceled
		rec.Error = "run canceled"
		rec.StartedAt, rec.FinishedAt = w.cfg.Now(), w.cfg.Now()
		return w.settle(ctx, rec)
	}
	// A paused run's tasks wait in the queue, spending no attempt.
	if paused, err := w.cfg.Runs.Paused(ctx, p.RunID); err != nil {
		return err
	} else if paused {
		return &waitError{Wait: 2 * time.Second, Err: fmt.Errorf("run %s is paused", p.RunID)}
	}

	if rec, ok, err := w.fromCache(ctx, p, ck); err != nil {
		return err
	} else if ok {
		log.InfoContext(ctx, "output reused from cache", "output_key", rec.OutputKey)
		return w.settle(ctx, rec)
	}

	return w.attempt(ctx, log, p, ck)
}

// attempt makes one provider call and decides what follows from its result.
func (w *Worker) attempt(ctx context.Context, log *slog.Logger, p task.Generate, ck string) error {
	model, ok := w.cfg.Registry.Lookup(p.ModelRef)
	if !ok {
		return w.fail(ctx, p, ck, nil, &provider.Error{Class: provider.Input, Message: fmt.Sprintf("model %q is not in this worker's registry", p.ModelRef)})
	}
	gen, ok := w.cfg.Generators[model.Provider]
	if !ok {
		return w.fail(ctx, p, ck, nil, &provider.Error{Class: provider.Billing, Provider: model.Provider, Message: "this worker has no credentials for the provider"})
	}
	if reason, stopped, err := w.cfg.Runs.ProviderStopped(ctx, p.RunID, model.Provider); err != nil {
		return err
	} else if stopped {
		history, _ := w.cfg.Runs.Attempts(ctx, p.RunID, p.TaskID)
		return w.fail(ctx, p, ck, history, &provider.Error{Class: provider.Billing, Provider: model.Provider,
			Message: "provider stopped for this run after a billing failure: " + reason})
	}
	history, err := w.cfg.Runs.Attempts(ctx, p.RunID, p.TaskID)
	if err != nil {
		return err
	}
	_, outputSpent := spent(history)
	seed := spec.RetrySeed(p.Seed, outputSpent)

	ref, err := w.reference(ctx, p.RefKey)
	if err != nil {
		return fmt.Errorf("load reference %s: %w", p.RefKey, err)
	}
	refCfg, _, _ := image.DecodeConfig(bytes.NewReader(ref.Data))
	want := expectation(model, p.Params, refCfg.Width, refCfg.Height)
	var editImage, editMask *provider.Image
	if p.EditImageKey != "" {
		img, err := w.reference(ctx, p.EditImageKey)
		if err != nil {
			return fmt.Errorf("load edit image %s: %w", p.EditImageKey, err)
		}
		mask, err := w.reference(ctx, p.EditMaskKey)
		if err != nil {
			return fmt.Errorf("load edit mask %s: %w", p.EditMaskKey, err)
		}
		editImage, editMask = &img, &mask
		cfg, _, _ := image.DecodeConfig(bytes.NewReader(img.Data))
		want = editExpectation(model, cfg.Width, cfg.Height)
	}

	// Budget: reserve the list price before spending it.
	if ok, err := w.cfg.Runs.Reserve(ctx, p.RunID, p.TaskID, model.Pricing.For(p.Params)); err != nil {
		return err
	} else if !ok {
		rec := w.baseRecord(p, ck)
		rec.Status = manifest.SkippedBudget
		rec.Error = fmt.Sprintf("budget: $%.2f for this output would pass the run's budget", model.Pricing.For(p.Params))
		fillTimes(rec, p, history, w.cfg.Now())
		log.InfoContext(ctx, "task skipped: over budget")
		return w.settle(ctx, rec)
	}

	lim := w.limitFor(model)
	lease, waited, err := w.acquire(ctx, lim, w.cfg.ID+"/"+p.RunID+"/"+p.TaskID)
	if err != nil {
		_ = w.cfg.Runs.Release(context.WithoutCancel(ctx), p.RunID, p.TaskID)
		var we *waitError
		if errors.As(err, &we) {
			telemetry.Requeue(ctx, "limit", we.Wait) // a wait, not a failure
		}
		return err
	}
	lease.Keep(ctx)
	start := w.cfg.Now()
	pctx, pspan := telemetry.Start(ctx, telemetry.SpanProviderSubmit, telemetry.GenAI(model.Provider, model.Ref)...)
	res, err := gen.Generate(pctx, provider.Request{
		Model: model.Name, Prompt: p.PromptText, Character: p.Character, Reference: ref, Seed: seed,
		Width: want.Width, Height: want.Height, Params: p.Params, Image: editImage, Mask: editMask,
	})
	if res != nil {
		pspan.SetAttributes(telemetry.ResponseID(res.RequestID), telemetry.CostUSD(res.CostUSD))
	}
	telemetry.End(pspan, err)
	lease.Release(ctx)
	w.report(ctx, lim, err)
	metrics := w.cfg.Telemetry.Metrics()
	var out *imagecheck.Output
	if err == nil {
		metrics.ProviderLatency(ctx, model.Provider, model.Ref, res.Latency)
		cctx, cspan := telemetry.Start(ctx, telemetry.SpanCheck)
		out, err = checkOutput(res.Image.Data, want, w.cfg.Checks)
		var pe *provider.Error
		if errors.As(err, &pe) {
			pe.Provider = model.Provider
		}
		var failure *imagecheck.Failure
		if errors.As(err, &failure) {
			metrics.CheckFailed(cctx, model.Ref, failure.Check)
		}
		telemetry.End(cspan, err)
	}
	a := manifest.Attempt{N: len(history) + 1, Seed: seed, StartedAt: start,
		DurationMS: w.cfg.Now().Sub(start).Milliseconds(), LimitWaitMS: waited.Milliseconds()}
	if res != nil {
		a.RequestID = res.RequestID
	}
	if err != nil {
		_ = w.cfg.Runs.Release(context.WithoutCancel(ctx), p.RunID, p.TaskID)
		if ctx.Err() != nil {
			// Shutdown or task deadline: asynq requeues the task; this was
			// not the provider's failure, so it is not in the history.
			return fmt.Errorf("interrupted: %w", err)
		}
		class := provider.ClassOf(err)
		a.Class, a.Error = string(class), err.Error()
		a.CostUSD = provider.CostOf(err) // counted in the task's cost at its end
		if aerr := w.cfg.Runs.AppendAttempt(ctx, p.RunID, p.TaskID, a); aerr != nil {
			return aerr
		}
		history = append(history, a)
		if class == provider.Billing {
			if serr := w.cfg.Runs.StopProvider(ctx, p.RunID, model.Provider, err.Error()); serr != nil {
				return serr
			}
			log.ErrorContext(ctx, "billing failure: provider stopped for this run", "provider", model.Provider, "err", err)
		}
		transientSpent, outputSpent := spent(history)
		if class == provider.Rate {
			metrics.RateLimited(ctx, model.Provider)
		}
		switch decide(class, transientSpent, outputSpent, max(p.MaxAttempts, 1), p.OutputRetries) {
		case requeueWait:
			wait := max(provider.RetryAfterOf(err), time.Second)
			log.InfoContext(ctx, "provider asked to wait", "wait", wait, "attempt", a.N)
			telemetry.Requeue(ctx, string(class), wait)
			return &waitError{Wait: wait, Err: err}
		case terminal:
			return w.fail(ctx, p, ck, history, err)
		default:
			log.WarnContext(ctx, "attempt failed, will retry", "class", string(class), "attempt", a.N, "err", err)
			telemetry.Retry(ctx, string(class), 0)
			return err
		}
	}
	if aerr := w.cfg.Runs.AppendAttempt(ctx, p.RunID, p.TaskID, a); aerr != nil {
		return aerr
	}
	history = append(history, a)
	return w.succeed(ctx, p, ck, history, res, out)
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

func checkOutput(data []byte, want imagecheck.Want, checks []imagecheck.Check) (*imagecheck.Output, error) {
	out, err := imagecheck.Decode(data)
	if err == nil {
		err = imagecheck.Run(out, want, checks...)
	}
	if err != nil {
		return nil, &provider.Error{Class: provider.BadOutput, Err: err}
	}
	return out, nil
}

// hostedAspectTolerance is how far a hosted model's output aspect may be
// from the one asked for before the output counts as bad.
const hostedAspectTolerance = 0.08

// expectation derives what the output must look like from the request.
func expectation(m provider.Model, params map[string]any, refW, refH int) imagecheck.Want {
	var want imagecheck.Want
	ar, _ := params["aspect_ratio"].(string)
	if ar == "" || ar == "match_input_image" {
		if p, ok := m.Param("aspect_ratio"); ok && ar == "" {
			ar, _ = p.Default.(string)
		}
	}
	if r, ok := imagecheck.ParseAspect(ar); ok {
		want.AspectRatio = r
	} else if ar == "match_input_image" && refW > 0 && refH > 0 {
		want.AspectRatio = float64(refW) / float64(refH)
	}
	// The simulator renders exact sizes; hosted models choose their own
	// resolution for an aspect ratio (FLUX rounds to multiples of 32, 16:9
	// comes back as 1392×752), so only the ratio is checked there, loosely.
	if m.Provider != "sim" {
		want.AspectTolerance = hostedAspectTolerance
	}
	if m.Provider == "sim" && want.AspectRatio > 0 {
		long := 512
		if v, ok := params["size"].(int); ok {
			long = v
		}
		if want.AspectRatio >= 1 {
			want.Width, want.Height = long, int(float64(long)/want.AspectRatio+0.5)
		} else {
			want.Width, want.Height = int(float64(long)*want.AspectRatio+0.5), long
		}
	}
	return want
}

// editExpectation is what an inpainting output must be. The simulator keeps
// the edited image's frame exactly. Hosted models choose: Ideogram keeps the
// image's frame, gpt-image-1 answers in its size parameter, so only the
// decode and blank checks apply there.
func editExpectation(m provider.Model, imageW, imageH int) imagecheck.Want {
	if m.Provider != "sim" || imageW <= 0 || imageH <= 0 {
		return imagecheck.Want{}
	}
	return imagecheck.Want{Width: imageW, Height: imageH, AspectRatio: float64(imageW) / float64(imageH)}
}

func (w *Worker) reference(ctx context.Context, key string) (provider.Image, error) {
	data, ok := w.refs.get(key)
	if !ok {
		var err error
		data, err = w.cfg.Store.Get(ctx, key)
		if err != nil {
			return provider.Image{}, err
		}
		w.refs.put(key, data)
	}
	img := provider.Image{Data: data, ContentType: http.DetectContentType(data)}
	// Hosted providers fetch large references by URL; a local directory has
	// no URL they could reach.
	if u, err := w.cfg.Store.URL(ctx, key, 2*time.Hour); err == nil && strings.HasPrefix(u, "http") {
		img.URL = u
	}
	return img, nil
}

func (w *Worker) baseRecord(p task.Generate, ck string) *manifest.Record {
	provName, _, _ := strings.Cut(p.ModelRef, ":")
	return &manifest.Record{
		Run: p.RunID, Task: p.TaskID, Character: p.Character, Prompt: p.Prompt, PromptText: p.PromptText,
		Model: p.Model, ModelRef: p.ModelRef, Provider: provName, Variant: p.Variant, Seed: p.Seed,
		ReferenceKey: p.RefKey, EditImageKey: p.EditImageKey, EditMaskKey: p.EditMaskKey, ContentKey: ck, Worker: w.cfg.ID,
	}
}

func (w *Worker) succeed(ctx context.Context, p task.Generate, ck string, history []manifest.Attempt, res *provider.Result, out *imagecheck.Output) error {
	last := history[len(history)-1]
	rec := w.baseRecord(p, ck)
	ext := extension(res.Image.Data)
	sum := sha256.Sum256(res.Image.Data)
	rec.Status = manifest.Succeeded
	rec.Seed = last.Seed
	rec.OutputKey = store.OutputKey(p.RunID, p.Character, p.Model, p.Prompt, p.Variant, ext)
	rec.SHA256 = hex.EncodeToString(sum[:])
	rec.Width, rec.Height = out.Width, out.Height
	rec.ContentType = http.DetectContentType(res.Image.Data)
	rec.Bytes = int64(len(res.Image.Data))
	rec.ProviderRequestID = res.RequestID
	rec.RevisedPrompt = res.RevisedPrompt
	rec.CostUSD = res.CostUSD
	rec.ProviderLatencyMS = res.Latency.Milliseconds()
	if p.Tags > 0 {
		rec.Tags, rec.TagsError = w.tags(ctx, p, rec)
	}
	fillTimes(rec, p, history, w.cfg.Now())
	sctx, span := telemetry.Start(ctx, telemetry.SpanStore)
	err := w.cfg.Store.Put(sctx, rec.OutputKey, res.Image.Data, rec.ContentType)
	if err != nil {
		err = fmt.Errorf("store output: %w", err)
	} else {
		err = w.putJSON(sctx, store.CacheKey(ck), cacheEntry{OutputKey: rec.OutputKey, SHA256: rec.SHA256,
			Width: rec.Width, Height: rec.Height, ContentType: rec.ContentType, Bytes: rec.Bytes,
			Seed: rec.Seed, RequestID: rec.ProviderRequestID, RevisedPrompt: rec.RevisedPrompt})
	}
	if err == nil {
		err = w.settle(sctx, rec)
	}
	telemetry.End(span, err)
	return err
}

// fail records a terminal failure and tells asynq not to retry.
func (w *Worker) fail(ctx context.Context, p task.Generate, ck string, history []manifest.Attempt, cause error) error {
	rec := w.baseRecord(p, ck)
	rec.Status = manifest.Failed
	rec.ErrorClass = string(provider.ClassOf(cause))
	rec.Error = cause.Error()
	if len(history) > 0 {
		rec.Seed = history[len(history)-1].Seed
		rec.ProviderRequestID = history[len(history)-1].RequestID
	}
	fillTimes(rec, p, history, w.cfg.Now())
	if err := w.settle(ctx, rec); err != nil {
		return err
	}
	return fmt.Errorf("%w: %w", cause, asynq.SkipRetry)
}

func fillTimes(rec *manifest.Record, p task.Generate, history []manifest.Attempt, now time.Time) {
	rec.Attempts = len(history)
	rec.AttemptLog = history
	for _, a := range history {
		rec.CostUSD += a.CostUSD // failed attempts the provider billed anyway
	}
	rec.FinishedAt = now
	rec.StartedAt = now
	if len(history) > 0 {
		rec.StartedAt = history[0].StartedAt
	}
	if !p.EnqueuedAt.IsZero() && rec.StartedAt.After(p.EnqueuedAt) {
		rec.QueueWaitMS = rec.StartedAt.Sub(p.EnqueuedAt).Milliseconds()
	}
}

// settle writes the task's record and counts its terminal state.
func (w *Worker) settle(ctx context.Context, rec *manifest.Record) error {
	if rec.TraceID == "" {
		rec.TraceID = telemetry.TraceID(ctx)
	}
	if err := w.putJSON(ctx, store.RecordKey(rec.Run, rec.Task), rec); err != nil {
		return err
	}
	return w.finish(ctx, rec, rec.Cached)
}

// finish counts a recorded terminal state exactly once and, when it was the
// run's last task, enqueues the run's single finalize task.
func (w *Worker) finish(ctx context.Context, rec *manifest.Record, cached bool) error {
	prog, err := w.cfg.Runs.Complete(ctx, rec.Run, rec.Task, rec.Status, cached, rec.CostUSD)
	if err != nil {
		return err
	}
	if prog.Counted {
		m := w.cfg.Telemetry.Metrics()
		m.TaskDone(ctx, rec.Provider, rec.ModelRef, string(rec.Status), rec.ErrorClass)
		if !cached {
			m.Cost(ctx, rec.Provider, rec.ModelRef, rec.CostUSD)
		}
	}
	if prog.Complete() {
		return w.enqueueFinalize(ctx, rec.Run)
	}
	return nil
}

func (w *Worker) enqueueFinalize(ctx context.Context, run string) error {
	t, opts := task.NewFinalize(run, telemetry.RunHeaders(ctx))
	_, err := w.client.EnqueueContext(ctx, t, opts...)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue finalize %s: %w", run, err)
	}
	return nil
}

// cacheEntry is stored at cache/<content key>.json after a success.
type cacheEntry struct {
	OutputKey     string `json:"output_key"`
	SHA256        string `json:"sha256"`
	Width         int    `json:"width"`
	Height        int    `json:"height"`
	ContentType   string `json:"content_type"`
	Bytes         int64  `json:"bytes"`
	Seed          int64  `json:"seed"`
	RequestID     string `json:"provider_request_id"`
	RevisedPrompt string `json:"revised_prompt,omitempty"`
}

// fromCache reuses an output an earlier run stored for the identical
// request: the image is copied into this run's layout, no provider is called
// and nothing is spent.
func (w *Worker) fromCache(ctx context.Context, p task.Generate, ck string) (*manifest.Record, bool, error) {
	raw, err := w.cfg.Store.Get(ctx, store.CacheKey(ck))
	if errors.Is(err, store.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read cache: %w", err)
	}
	var ce cacheEntry
	if err := json.Unmarshal(raw, &ce); err != nil {
		return nil, false, nil // a damaged index entry only costs a provider call
	}
	data, err := w.cfg.Store.Get(ctx, ce.OutputKey)
	if errors.Is(err, store.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read cached output: %w", err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != ce.SHA256 {
		return nil, false, nil
	}
	rec := w.baseRecord(p, ck)
	rec.Status = manifest.Succeeded
	rec.Cached = true
	rec.Seed = ce.Seed
	rec.OutputKey = store.OutputKey(p.RunID, p.Character, p.Model, p.Prompt, p.Variant, extension(data))
	rec.SHA256, rec.Width, rec.Height, rec.ContentType, rec.Bytes = ce.SHA256, ce.Width, ce.Height, ce.ContentType, ce.Bytes
	rec.ProviderRequestID, rec.RevisedPrompt = ce.RequestID, ce.RevisedPrompt
	fillTimes(rec, p, nil, w.cfg.Now())
	if rec.OutputKey != ce.OutputKey {
		if err := w.cfg.Store.Put(ctx, rec.OutputKey, data, ce.ContentType); err != nil {
			return nil, false, fmt.Errorf("copy cached output: %w", err)
		}
	}
	return rec, true, nil
}

func (w *Worker) readRecord(ctx context.Context, run, taskID string) (*manifest.Record, error) {
	raw, err := w.cfg.Store.Get(ctx, store.RecordKey(run, taskID))
	if err != nil {
		return nil, err
	}
	var rec manifest.Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("decode record %s/%s: %w", run, taskID, err)
	}
	return &rec, nil
}

func (w *Worker) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if err := w.cfg.Store.Put(ctx, key, b, "application/json"); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return nil
}

// extension names an output by its sniffed content, not by what the
// provider claimed.
func extension(data []byte) string {
	switch http.DetectContentType(data) {
	case "image/jpeg":
		return "jpg"
	case "image/webp":
		return "webp"
	case "image/gif":
		return "gif"
	default:
		return "png"
	}
}

// tags runs the topic-tags model on the prompt the provider actually used
// (its rewrite when it reports one). Tagging is an extra for dataset runs:
// its failure is recorded, never fails the image.
func (w *Worker) tags(ctx context.Context, p task.Generate, rec *manifest.Record) ([]string, string) {
	if w.cfg.Tagger == nil {
		return nil, "no tagger: this worker has no REPLICATE_API_TOKEN"
	}
	text := rec.PromptText
	if rec.RevisedPrompt != "" {
		text = rec.RevisedPrompt
	}
	tags, err := w.cfg.Tagger.Tags(ctx, text, p.Tags)
	if err != nil {
		w.log.WarnContext(ctx, "topic tags failed", "run_id", p.RunID, "task_id", p.TaskID, "err", err)
		return nil, err.Error()
	}
	return tags, ""
}
