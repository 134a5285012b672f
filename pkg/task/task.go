// Package task is the queue contract between the producer (scheduler) and
// the consumers (worker): task type names, queue names, payload structs and
// the deterministic ids that make enqueueing idempotent.
//
// Payloads are small on purpose: ids, seeds, prompt text and object keys,
// in a compact JSON wire format (wire.go), since a large run keeps every
// queued payload in Redis. They never carry image bytes or secrets; a worker loads the reference from
// the store by key and reads provider keys from its own environment.
package task

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// Task type names, domain:action.
const (
	// TypeGenerate is one (character, prompt, model, variant) generation.
	TypeGenerate = "image:generate"
	// TypeFinalize is the fan-in of a run: manifest, summary, report.
	TypeFinalize = "run:finalize"
	// TypeFold folds a batch of a running run's finished records into
	// one part object, so that the fan-in reads one object per batch.
	TypeFold = "run:fold"
	// TypeNotify delivers a finished run's webhook.
	TypeNotify = "run:notify"
)

// QueueControl carries finalize tasks; it is weighted above generation so a
// finished run is reported promptly even behind a long backlog.
const QueueControl = "control"

// QueueFor returns the queue that holds a provider's generation tasks. One
// queue per provider keeps a throttled provider from holding worker slots
// that other providers' tasks could use.
func QueueFor(provider string) string { return "gen:" + provider }

// Generate is the payload of a TypeGenerate task.
type Generate struct {
	RunID string `json:"run_id"`
	// TaskID is the deterministic id from spec expansion, unique in the run.
	TaskID    string `json:"task_id"`
	Character string `json:"character"`
	// Prompt is the prompt's id; PromptText its text.
	Prompt     string `json:"prompt"`
	PromptText string `json:"prompt_text"`
	// Model is the model's id in the spec; ModelRef its "provider:name".
	Model    string         `json:"model"`
	ModelRef string         `json:"model_ref"`
	Params   map[string]any `json:"params,omitempty"`
	Variant  int            `json:"variant"`
	// Seed is the task's base seed; output retries derive new ones from it.
	Seed int64 `json:"seed"`
	// RefKey is the object key of the character reference (refs/<sha256>.<ext>).
	RefKey string `json:"ref_key"`
	// EditImageKey and EditMaskKey, for a prompt that is an inpainting
	// edit, are the object keys (refs/<sha256>.<ext>) of the image to
	// repaint and its mask (white = repaint). Empty otherwise.
	EditImageKey string `json:"edit_image_key,omitempty"`
	EditMaskKey  string `json:"edit_mask_key,omitempty"`
	// OutputRetries is how many extra attempts a bad or moderated output gets.
	OutputRetries int `json:"output_retries"`
	// Tags, when above zero, asks for that many topic tags of the prompt.
	Tags int `json:"tags,omitempty"`
	// MaxAttempts bounds attempts lost to transient failures.
	MaxAttempts int `json:"max_attempts"`
	// EnqueuedAt is when the producer enqueued the task, for queue-wait figures.
	EnqueuedAt time.Time `json:"enqueued_at"`
}

// QueueID is the asynq task id: unique per run and task, so enqueueing the
// same expansion twice is rejected by the queue instead of duplicated.
func (g Generate) QueueID() string { return "gen:" + g.RunID + ":" + g.TaskID }

// GenerateMaxRetry is the queue's retry limit for a generation task. It is
// never the one that ends a task: the worker decides from the task's
// attempt history (max_attempts, output_retries) and ends it with a record,
// and infrastructure faults do not count as failures at all. It only has
// to stay out of the way.
const GenerateMaxRetry = 10000

// NewGenerate returns the queue task for g, with headers (trace context),
// and the options every enqueuer uses: one per run and task (TaskID), on
// its provider's queue, each attempt bounded by timeout.
func NewGenerate(g Generate, headers map[string]string, timeout time.Duration) (*asynq.Task, []asynq.Option, error) {
	b, err := EncodeGenerate(g)
	if err != nil {
		return nil, nil, err
	}
	prov, _, _ := strings.Cut(g.ModelRef, ":")
	return asynq.NewTaskWithHeaders(TypeGenerate, b, headers), []asynq.Option{
		asynq.TaskID(g.QueueID()), asynq.Queue(QueueFor(prov)),
		asynq.MaxRetry(GenerateMaxRetry), asynq.Timeout(timeout)}, nil
}

// Finalize is the payload of a TypeFinalize task.
type Finalize struct {
	RunID string `json:"run_id"`
}

// QueueID is the finalize task's asynq id: one per run.
func (f Finalize) QueueID() string { return "fin:" + f.RunID }

// Fold is the payload of a TypeFold task: the run, and which batch of its
// fold list (the Batch-th FoldSize records pushed) made it due.
type Fold struct {
	RunID string `json:"run_id"`
	Batch int64  `json:"batch"`
}

// QueueID is the fold task's asynq id: one per run and batch.
func (f Fold) QueueID() string { return fmt.Sprintf("fold:%s:%d", f.RunID, f.Batch) }

// NewFold returns the run:fold task of run's batch, on QueueControl,
// retried 3 times (a fold left undone only costs the fan-in reads).
// Enqueueing it twice fails with asynq.ErrTaskIDConflict, which callers
// treat as done.
func NewFold(run string, batch int64) (*asynq.Task, []asynq.Option) {
	f := Fold{RunID: run, Batch: batch}
	b, _ := json.Marshal(f) // a struct of a string and an int cannot fail
	return asynq.NewTask(TypeFold, b), []asynq.Option{asynq.TaskID(f.QueueID()), asynq.Queue(QueueControl), asynq.MaxRetry(3)}
}

// Notify is the payload of a TypeNotify task: the run, and which of its
// finalizations (1 for the first; `likeness retry` finalizes again) it
// announces.
type Notify struct {
	RunID        string `json:"run_id"`
	Finalization int    `json:"finalization"`
}

// QueueID is the notify task's asynq id: one per finalization of a run.
func (n Notify) QueueID() string { return fmt.Sprintf("notify:%s:%d", n.RunID, n.Finalization) }

// FinalizeRetention is how long a finalize task is kept after it ran, so
// that a late second enqueue for the run is still refused by its TaskID.
const FinalizeRetention = 7 * 24 * time.Hour

// NewFinalize returns run's fan-in task, with headers (trace context), and
// the options every enqueuer uses: one per run (TaskID), on QueueControl,
// retried 10 times, kept FinalizeRetention after it ran. Enqueueing it
// when it is already queued or kept fails with asynq.ErrTaskIDConflict,
// which callers treat as done.
func NewFinalize(run string, headers map[string]string) (*asynq.Task, []asynq.Option) {
	fin := Finalize{RunID: run}
	b, _ := json.Marshal(fin) // a struct of one string cannot fail
	return asynq.NewTaskWithHeaders(TypeFinalize, b, headers),
		[]asynq.Option{asynq.TaskID(fin.QueueID()), asynq.Queue(QueueControl), asynq.MaxRetry(10), asynq.Retention(FinalizeRetention)}
}

// Decode unmarshals a payload strictly, naming the task type on error.
func Decode(typ string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s payload: %w", typ, err)
	}
	return nil
}

// ContentKey identifies the exact request a Generate task makes: model,
// params, prompt text, reference, seed and, for an edit, its image and mask.
// Two tasks with the same content key would pay for the same output, so a
// worker that finds one stored skips the provider call. Params are encoded canonically (sorted keys).
func (g Generate) ContentKey() string {
	b, err := json.Marshal(struct {
		ModelRef   string         `json:"model_ref"`
		Params     map[string]any `json:"params"`
		PromptText string         `json:"prompt_text"`
		RefKey     string         `json:"ref_key"`
		Seed       int64          `json:"seed"`
		// omitempty: requests without an edit keep the keys they had
		// before edits existed, and so their cached outputs.
		EditImageKey string `json:"edit_image_key,omitempty"`
		EditMaskKey  string `json:"edit_mask_key,omitempty"`
	}{g.ModelRef, g.Params, g.PromptText, g.RefKey, g.Seed, g.EditImageKey, g.EditMaskKey})
	if err != nil {
		// Params come from a validated spec and are plain JSON values.
		b = []byte(fmt.Sprintf("%s\x00%v\x00%s\x00%s\x00%d\x00%s\x00%s", g.ModelRef, g.Params, g.PromptText, g.RefKey, g.Seed, g.EditImageKey, g.EditMaskKey))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// DecodeGenerate decodes a Generate payload, in the compact wire format
// NewGenerate writes or in the first format (Generate's own JSON) of tasks
// enqueued before it. JSON has one number type, so whole-number params come
// back as int, as the spec parser produced them; adapters and checks see
// the same values the producer validated.
func DecodeGenerate(data []byte) (Generate, error) {
	var g Generate
	ok, err := decodeWire(data, &g)
	if err != nil {
		return Generate{}, fmt.Errorf("decode %s payload: %w", TypeGenerate, err)
	}
	if !ok {
		if err := Decode(TypeGenerate, data, &g); err != nil {
			return g, err
		}
	}
	for k, v := range g.Params {
		g.Params[k] = wholeToInt(v)
	}
	return g, nil
}

func wholeToInt(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int(x)
		}
	case []any:
		for i := range x {
			x[i] = wholeToInt(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = wholeToInt(x[k])
		}
	}
	return v
}
