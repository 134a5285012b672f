package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/imagecheck"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

// The end of a task: its record is written, then its terminal status is
// counted once. The order is what makes a crash anywhere harmless: a
// delivery marks the task settling, writes the record, and counts it; a
// later delivery that finds the mark without a count reads the record and
// counts it.

func (w *Worker) baseRecord(p task.Generate, ck string) *manifest.Record {
	provName, _, _ := strings.Cut(p.ModelRef, ":")
	return &manifest.Record{
		Run: p.RunID, Task: p.TaskID, Character: p.Character, Prompt: p.Prompt, PromptText: p.PromptText,
		Model: p.Model, ModelRef: p.ModelRef, Provider: provName, Variant: p.Variant, Params: p.Params,
		BaseSeed: p.Seed, Seed: p.Seed,
		ReferenceKey: p.RefKey, EditImageKey: p.EditImageKey, EditMaskKey: p.EditMaskKey, ContentKey: ck, Worker: w.cfg.ID,
	}
}

// successRecord is the record of a paid, checked and stored output.
func (w *Worker) successRecord(ctx context.Context, p task.Generate, ck string, history []manifest.Attempt, a manifest.Attempt,
	data []byte, out *imagecheck.Output, latency time.Duration) *manifest.Record {
	rec := w.baseRecord(p, ck)
	sum := sha256.Sum256(data)
	rec.Status = manifest.Succeeded
	rec.Seed = a.Seed
	rec.OutputKey = a.OutputKey
	rec.SHA256 = hex.EncodeToString(sum[:])
	rec.Width, rec.Height = out.Width, out.Height
	rec.ContentType = contentType(data)
	rec.Bytes = int64(len(data))
	rec.ProviderRequestID = a.RequestID
	rec.RevisedPrompt = a.RevisedPrompt
	rec.ProviderLatencyMS = latency.Milliseconds()
	if p.Tags > 0 {
		rec.Tags, rec.TagsError = w.tags(ctx, p, rec)
	}
	fillTimes(rec, p, history, w.cfg.Now())
	return rec
}

// succeed writes the record of a paid, checked and stored output whose
// attempt is recorded, and counts it.
func (w *Worker) succeed(ctx context.Context, p task.Generate, ck string, history []manifest.Attempt, a manifest.Attempt,
	data []byte, out *imagecheck.Output, latency time.Duration) error {
	return w.settle(ctx, w.successRecord(ctx, p, ck, history, a, data, out, latency))
}

// recordStored finishes a task whose output an earlier delivery paid for,
// stored and recorded as its last attempt, but whose record it did not
// write: the stored output is read back; no provider is called.
func (w *Worker) recordStored(ctx context.Context, p task.Generate, ck string, history []manifest.Attempt, a manifest.Attempt) error {
	data, err := w.cfg.Store.Get(ctx, a.OutputKey)
	if err != nil {
		return fmt.Errorf("read stored output %s: %w", a.OutputKey, err)
	}
	out, err := imagecheck.Decode(data)
	if err != nil {
		return fmt.Errorf("stored output %s: %w", a.OutputKey, err)
	}
	return w.succeed(ctx, p, ck, history, a, data, out, time.Duration(a.DurationMS)*time.Millisecond)
}

// fail records a terminal failure. The task leaves the queue: its record
// and count are the truth, and `likeness retry` finds it there.
func (w *Worker) fail(ctx context.Context, p task.Generate, ck string, history []manifest.Attempt, class provider.Class, msg string) error {
	rec := w.baseRecord(p, ck)
	rec.Status = manifest.Failed
	rec.ErrorClass = string(class)
	rec.Error = msg
	if last := lastAttempt(history); last != nil {
		rec.Seed = last.Seed
		rec.ProviderRequestID = last.RequestID
	}
	fillTimes(rec, p, history, w.cfg.Now())
	w.log.WarnContext(ctx, "task failed", "run_id", p.RunID, "task_id", p.TaskID, "class", string(class), "err", msg)
	return w.settle(ctx, rec)
}

// fillTimes sets a record's attempts, cost and times from its history. The
// cost is everything the provider billed for the task's attempts.
func fillTimes(rec *manifest.Record, p task.Generate, history []manifest.Attempt, now time.Time) {
	rec.Attempts = len(history)
	rec.AttemptLog = history
	rec.CostUSD = 0
	for _, a := range history {
		rec.CostUSD += a.CostUSD
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
	if err := w.cfg.Runs.MarkSettling(ctx, rec.Run, rec.Task, settleTag(rec)); err != nil {
		return err
	}
	return w.writeAndFinish(ctx, rec)
}

// writeAndFinish writes the record of a task marked settling and counts it.
func (w *Worker) writeAndFinish(ctx context.Context, rec *manifest.Record) error {
	if rec.TraceID == "" {
		rec.TraceID = telemetry.TraceID(ctx)
	}
	key := store.RecordKey(rec.Run, rec.Task)
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if err := w.cfg.Store.Put(ctx, key, raw, "application/json"); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return w.finishStored(ctx, rec, raw)
}

// settleTag identifies a terminal record among those a task may have had
// (a retried task's old record stays until the new one replaces it).
func settleTag(rec *manifest.Record) string { return fmt.Sprintf("%s/%d", rec.Status, rec.Attempts) }

// finish counts a recorded terminal state exactly once and, when it was the
// run's last task, enqueues the run's single finalize task.
// In the same round trip it drops the delivery's claim and indexes a
// paid output in the cache.
func (w *Worker) finish(ctx context.Context, rec *manifest.Record) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode record %s/%s: %w", rec.Run, rec.Task, err)
	}
	return w.finishStored(ctx, rec, raw)
}

// finishStored is finish for the record stored as raw: raw goes onto the
// run's fold list, and a run:fold task is enqueued when it completes a
// batch.
func (w *Worker) finishStored(ctx context.Context, rec *manifest.Record, raw []byte) error {
	req := runstate.FinishRequest{Run: rec.Run, Task: rec.Task, Status: rec.Status, Cached: rec.Cached, Record: raw}
	d := deliveryOf(ctx)
	if d != nil && d.run == rec.Run && d.task == rec.Task {
		req.Holder = d.holder
	}
	if rec.Status == manifest.Succeeded && !rec.Cached && rec.OutputKey != "" {
		req.ContentKey = rec.ContentKey
	}
	prog, err := w.cfg.Runs.Finish(ctx, req)
	if err != nil {
		return err
	}
	if d != nil && req.Holder != "" {
		d.released = true
	}
	if prog.Counted {
		m := w.cfg.Telemetry.Metrics()
		m.TaskDone(ctx, rec.Provider, rec.ModelRef, string(rec.Status), rec.ErrorClass)
		if rec.CostUSD > 0 {
			m.Cost(ctx, rec.Provider, rec.ModelRef, rec.CostUSD)
		}
	}
	if prog.FoldBatch > 0 {
		w.enqueueFold(ctx, rec.Run, prog.FoldBatch)
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

// cacheEntry is what the bucket's older cache directory held at
// cache/<content key>.json for each output (read, never written now: the
// cache index in Redis points at the task record that describes an output).
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

// cachedOutput reads what the cache index entry ref says about the output
// for content key ck; ok is false when the bucket no longer holds it as
// described.
func (w *Worker) cachedOutput(ctx context.Context, ck string, ref runstate.CacheRef) (ce cacheEntry, ok bool, err error) {
	if ref.Legacy {
		raw, err := w.cfg.Store.Get(ctx, store.CacheKey(ck))
		if isNotExist(err) {
			return ce, false, nil
		}
		if err != nil {
			return ce, false, fmt.Errorf("read cache: %w", err)
		}
		// A damaged entry only costs a provider call.
		return ce, json.Unmarshal(raw, &ce) == nil && ce.OutputKey != "", nil
	}
	raw, err := w.cfg.Store.Get(ctx, store.RecordKey(ref.Run, ref.Task))
	if isNotExist(err) {
		return ce, false, nil
	}
	if err != nil {
		return ce, false, fmt.Errorf("read cached record: %w", err)
	}
	var rec manifest.Record
	if json.Unmarshal(raw, &rec) != nil || rec.Status != manifest.Succeeded || rec.ContentKey != ck || rec.OutputKey == "" {
		return ce, false, nil // replaced by another record, or another request's
	}
	return cacheEntry{OutputKey: rec.OutputKey, SHA256: rec.SHA256, Width: rec.Width, Height: rec.Height,
		ContentType: rec.ContentType, Bytes: rec.Bytes, Seed: rec.Seed, RequestID: rec.ProviderRequestID,
		RevisedPrompt: rec.RevisedPrompt}, true, nil
}

// fromCache reuses an output an earlier task stored for the identical
// request, which the cache index found: the image is copied into this
// run's layout, no provider is called and nothing is spent. An entry whose
// output the bucket no longer holds is dropped from the index.
func (w *Worker) fromCache(ctx context.Context, p task.Generate, ck string, ref runstate.CacheRef) (*manifest.Record, bool, error) {
	ce, ok, err := w.cachedOutput(ctx, ck, ref)
	if err != nil {
		return nil, false, err
	}
	var data []byte
	if ok {
		data, err = w.cfg.Store.Get(ctx, ce.OutputKey)
		switch {
		case isNotExist(err):
			ok = false
		case err != nil:
			return nil, false, fmt.Errorf("read cached output: %w", err)
		default:
			sum := sha256.Sum256(data)
			ok = hex.EncodeToString(sum[:]) == ce.SHA256
		}
	}
	if !ok {
		if err := w.cfg.Runs.CacheForget(ctx, ck, ref); err != nil {
			w.log.WarnContext(ctx, "drop a stale cache index entry", "err", err)
		}
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
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	if err := w.cfg.Store.Put(ctx, key, b, "application/json"); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	return nil
}

func isNotExist(err error) bool { return errors.Is(err, store.ErrNotExist) }

func jsonUnmarshal(raw []byte, v any) error { return json.NewDecoder(bytes.NewReader(raw)).Decode(v) }

// extension names an output by its sniffed content, not by what the
// provider claimed.
func extension(data []byte) string {
	switch contentType(data) {
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

func contentType(data []byte) string { return http.DetectContentType(data) }

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
