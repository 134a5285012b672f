// Package scheduler is the producer role. Submit turns a validated spec into
// a run: it uploads the character references content-addressed, stores the
// spec as submitted, records the run in Redis and enqueues one
// image:generate task per (character × prompt × model × variant), each with
// a deterministic asynq TaskID so that submitting again never duplicates work.
//
// The spec is parsed and validated (pkg/spec) before Submit is called, so bad
// input never reaches the queue or the bucket.
//
// Around the submit, the package holds run control: Retry puts a run's
// failed tasks back in the queue; Cron submits specs on schedules (an
// unchanged spec is the same run, so a tick costs nothing); a Sweeper finds
// runs that stopped short of their end (every task done but no fan-in
// queued, or a submit that died half-way) and moves them on. Workers (package
// worker) consume what all of these enqueue.
package scheduler

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // reference formats
	_ "image/png"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	_ "golang.org/x/image/webp"
	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

// Blobs is the object storage the producer writes references and specs to,
// and reads task records from when a spec is submitted again.
type Blobs interface {
	PutIfAbsent(ctx context.Context, key string, data []byte, contentType string) (bool, error)
	Get(ctx context.Context, key string) ([]byte, error)
}

// Enqueuer is the queue client; *asynq.Client satisfies it.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// MaxReferenceBytes caps a remote reference download.
const MaxReferenceBytes = 20 << 20

// Config configures a Producer. Queue, Store and Runs are required.
type Config struct {
	Queue Enqueuer
	Store Blobs
	Runs  *runstate.Store
	// Tasks removes finished queue tasks (a run's kept finalize) when a
	// spec submitted again reopens tasks of a finished run; an
	// *asynq.Inspector. Nil: a finished run's failed and skipped tasks
	// are not redone by a resubmission.
	Tasks TaskDeleter
	// HTTPClient fetches https references. Default: a client with a 60s timeout.
	HTTPClient *http.Client
	// TaskTimeout bounds one attempt of a task. Default 30m (a provider's
	// own hard limit for a prediction).
	TaskTimeout time.Duration
	// Telemetry traces the submit (the run's root span) and carries its
	// context in every task's headers. Nil: no tracing.
	Telemetry *telemetry.Telemetry
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Enqueuers is how many tasks Submit enqueues at once. Default 16:
	// enough to keep a Redis on the same network busy (a 100,000-task
	// submit takes seconds), few enough to leave it free for the workers.
	Enqueuers int
}

// Producer submits runs.
type Producer struct{ cfg Config }

// New returns a Producer.
func New(cfg Config) (*Producer, error) {
	if cfg.Queue == nil || cfg.Store == nil || cfg.Runs == nil {
		return nil, errors.New("scheduler: Config.Queue, Store and Runs are required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.TaskTimeout <= 0 {
		cfg.TaskTimeout = 30 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Enqueuers <= 0 {
		cfg.Enqueuers = 16
	}
	return &Producer{cfg: cfg}, nil
}

// Submission describes a submitted run.
type Submission struct {
	RunID string
	// Tasks is the run's task count.
	Tasks int
	// Enqueued is how many tasks this call put in the queue; 0 when the run
	// had been submitted before.
	Enqueued int
	// Existing is true when the identical spec had already been submitted:
	// the run id is the same; its succeeded outputs are kept, and only its
	// failed and skipped tasks were enqueued again (Enqueued of them).
	Existing bool
}

// ErrReference marks a Submit that failed on one of the spec's images: a
// remote reference that could not be downloaded or is not an image, or an
// edit whose mask and image differ in size once both are known. It is the
// spec's fault (or its image host's), not the queue's or the bucket's, and
// nothing was recorded or enqueued.
var ErrReference = errors.New("unusable image")

// RunID returns the run id of a spec: its name and a digest of everything
// that determines its outputs. The same spec always has the same run id.
func RunID(s *spec.Spec) string { return s.Name + "-" + s.Digest()[:12] }

// Submit uploads references, records the run and enqueues its tasks.
func (p *Producer) Submit(ctx context.Context, s *spec.Spec) (sub *Submission, err error) {
	runID := RunID(s)
	tasks := s.Expand()
	ctx, span := p.cfg.Telemetry.StartRun(ctx, runID, len(tasks))
	defer func() { telemetry.End(span, err) }()
	refKeys, edits, err := p.uploadReferences(ctx, s)
	if err != nil {
		return nil, err
	}
	sub = &Submission{RunID: runID, Tasks: len(tasks)}
	now := p.cfg.Now()
	refs := make([]string, 0, len(s.Models))
	for _, m := range s.Models {
		refs = append(refs, m.Ref)
	}
	created, err := p.cfg.Runs.Create(ctx, runstate.Run{
		ID: runID, Name: s.Name, SpecKey: store.SpecKey(runID), Total: len(tasks),
		BudgetUSD: s.BudgetUSD, CreatedAt: now, Models: refs,
		TraceParent:   telemetry.Inject(ctx, map[string]string{})["traceparent"],
		InfraRetryFor: s.InfraRetryFor,
		OutputRetries: s.OutputRetries, MaxAttempts: s.MaxAttempts, Tags: s.Tags.NumberOfTags,
	})
	if err != nil {
		return nil, err
	}
	if !created {
		st, err := p.cfg.Runs.Get(ctx, runID)
		if err != nil {
			return nil, err
		}
		if st.Enqueued {
			sub.Existing = true
			sub.Enqueued, err = p.resubmit(ctx, s, runID, refKeys, edits, now)
			return sub, err
		}
		// An earlier submit stopped half-way: finish enqueueing. Tasks already
		// in the queue are rejected by their TaskID.
	}
	if _, err := p.cfg.Store.PutIfAbsent(ctx, store.SpecKey(runID), s.Raw, "application/yaml"); err != nil {
		return nil, fmt.Errorf("store spec: %w", err)
	}
	if sub.Enqueued, err = p.enqueueAll(ctx, interleave(tasks), func(t spec.Task) task.Generate {
		return payloadOf(s, runID, t, refKeys, edits, now)
	}); err != nil {
		return nil, err
	}
	if err := p.cfg.Runs.MarkEnqueued(ctx, runID); err != nil {
		return nil, err
	}
	p.cfg.Logger.InfoContext(ctx, "run submitted", "run_id", runID, "tasks", len(tasks), "enqueued", sub.Enqueued)
	return sub, nil
}

// payloadOf is the queue payload of one task of the spec.
func payloadOf(s *spec.Spec, runID string, t spec.Task, refKeys map[string]string, edits map[string][2]string, now time.Time) task.Generate {
	return task.Generate{
		RunID: runID, TaskID: t.ID, Character: t.Character, Prompt: t.Prompt, PromptText: t.PromptText,
		Model: t.Model, ModelRef: t.ModelRef, Params: t.Params, Variant: t.Variant, Seed: t.Seed,
		RefKey: refKeys[t.Character], EditImageKey: edits[t.Prompt][0], EditMaskKey: edits[t.Prompt][1],
		OutputRetries: s.OutputRetries, MaxAttempts: s.MaxAttempts,
		Tags: s.Tags.NumberOfTags, EnqueuedAt: now,
	}
}

// enqueueAll enqueues every task in order and returns how many the queue
// did not hold yet. One enqueue is one Redis round trip (asynq's enqueue
// script), so a run of 100,000 tasks enqueued one after the other spends
// most of its submit waiting on the network: a run of more than
// sequentialEnqueue tasks is enqueued p.cfg.Enqueuers at a time, which
// keeps the interleaved order up to a window of Enqueuers tasks. A smaller
// run takes milliseconds either way and is enqueued one task after the
// other, in exact order. On an error the tasks in flight finish and the
// first error is returned; the run stays not-enqueued, and submitting
// again finishes the job.
func (p *Producer) enqueueAll(ctx context.Context, tasks []spec.Task, payload func(spec.Task) task.Generate) (int, error) {
	limit := p.cfg.Enqueuers
	if len(tasks) <= sequentialEnqueue {
		limit = 1
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(limit)
	var enqueued atomic.Int64
	for _, t := range tasks {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			ok, err := p.enqueue(gctx, payload(t))
			if ok {
				enqueued.Add(1)
			}
			return err
		})
	}
	err := g.Wait()
	if err == nil {
		err = ctx.Err()
	}
	return int(enqueued.Load()), err
}

// sequentialEnqueue is the largest run enqueued one task at a time.
const sequentialEnqueue = 256

// enqueue puts one task in its provider's queue. It returns false when the
// queue already holds the task (its TaskID is taken).
func (p *Producer) enqueue(ctx context.Context, g task.Generate) (bool, error) {
	t, opts, err := task.NewGenerate(g, telemetry.TaskHeaders(ctx, g.TaskID), p.cfg.TaskTimeout)
	if err != nil {
		return false, err
	}
	_, err = p.cfg.Queue.EnqueueContext(ctx, t, opts...)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("enqueue task %s: %w", g.TaskID, err)
	}
	return true, nil
}

// uploadReferences stores each character's reference, and each edit
// prompt's image and mask, at refs/<sha256>.<ext>, and returns the object
// keys: per character id, and per prompt id the image's and the mask's.
// Identical images are stored once.
func (p *Producer) uploadReferences(ctx context.Context, s *spec.Spec) (refs map[string]string, edits map[string][2]string, err error) {
	refs = make(map[string]string, len(s.Characters))
	for _, c := range s.Characters {
		if refs[c.ID], _, err = p.upload(ctx, c.Reference); err != nil {
			return nil, nil, fmt.Errorf("character %s: reference %s: %w", c.ID, c.Reference.Source, err)
		}
	}
	edits = map[string][2]string{}
	for _, pr := range s.Prompts {
		if pr.Edit == nil {
			continue
		}
		var keys [2]string
		var sizes [2]image.Point
		for i, r := range []spec.Reference{pr.Edit.Image, pr.Edit.Mask} {
			if keys[i], sizes[i], err = p.upload(ctx, r); err != nil {
				return nil, nil, fmt.Errorf("prompt %s: %s %s: %w", pr.ID, [2]string{"image", "mask"}[i], r.Source, err)
			}
		}
		// The spec checks local files; a remote image or mask is only
		// known now.
		if sizes[0] != sizes[1] {
			return nil, nil, fmt.Errorf("prompt %s: %w: the mask %s is %dx%d but the image %s is %dx%d; the mask must be the image's size",
				pr.ID, ErrReference, pr.Edit.Mask.Source, sizes[1].X, sizes[1].Y, pr.Edit.Image.Source, sizes[0].X, sizes[0].Y)
		}
		edits[pr.ID] = keys
	}
	return refs, edits, nil
}

// upload stores one image content-addressed, downloading it first when it
// is remote, and returns its key and size.
func (p *Producer) upload(ctx context.Context, ref spec.Reference) (string, image.Point, error) {
	data, sum, ext, ctype := ref.Data, ref.SHA256, ref.Ext, ref.ContentType
	size := image.Pt(ref.Width, ref.Height)
	if ref.Remote {
		var err error
		data, ext, ctype, err = p.fetch(ctx, ref.Source)
		if err != nil {
			return "", size, fmt.Errorf("%w: %w", ErrReference, err)
		}
		h := sha256.Sum256(data)
		sum = hex.EncodeToString(h[:])
		cfg, _, _ := image.DecodeConfig(bytes.NewReader(data)) // fetch has decoded it once
		size = image.Pt(cfg.Width, cfg.Height)
	}
	key := store.RefKey(sum, ext)
	if _, err := p.cfg.Store.PutIfAbsent(ctx, key, data, ctype); err != nil {
		return "", size, fmt.Errorf("upload: %w", err)
	}
	return key, size, nil
}

// fetch downloads a remote reference and checks that it is an image.
func (p *Producer) fetch(ctx context.Context, url string) (data []byte, ext, ctype string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", "", err
	}
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", "", fmt.Errorf("download answered %s", resp.Status)
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, MaxReferenceBytes+1))
	if err != nil {
		return nil, "", "", err
	}
	if len(data) > MaxReferenceBytes {
		return nil, "", "", fmt.Errorf("larger than %d MiB", MaxReferenceBytes>>20)
	}
	_, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, "", "", fmt.Errorf("not a PNG, JPEG or WebP image: %w", err)
	}
	switch format {
	case "png":
		return data, "png", "image/png", nil
	case "jpeg":
		return data, "jpg", "image/jpeg", nil
	case "webp":
		return data, "webp", "image/webp", nil
	}
	return nil, "", "", fmt.Errorf("format %s is not accepted (PNG, JPEG or WebP)", format)
}

// interleave orders tasks round-robin over models, so the queue alternates
// between models (and so between their providers' limits) instead of
// holding long runs of one model that would fill every worker slot while
// that model's limit is the bottleneck.
func interleave(tasks []spec.Task) []spec.Task {
	var order []string
	groups := map[string][]spec.Task{}
	for _, t := range tasks {
		if _, ok := groups[t.Model]; !ok {
			order = append(order, t.Model)
		}
		groups[t.Model] = append(groups[t.Model], t)
	}
	out := make([]spec.Task, 0, len(tasks))
	for i := 0; len(out) < len(tasks); i++ {
		for _, m := range order {
			if g := groups[m]; i < len(g) {
				out = append(out, g[i])
			}
		}
	}
	return out
}
