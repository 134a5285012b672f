// Package manifest defines what a run leaves behind besides its images: the
// per-task Record a worker writes when a task reaches a terminal state, the
// manifest.jsonl the fan-in assembles from those records, the run.json
// Summary, and the HTML comparison report (an index and pages per
// character, see RenderReport; package artifact stores it with the
// thumbnails and character sheets it links).
//
// Records are written under runs/<run>/records/<task>.json; the fan-in reads
// them all, so a redelivered task that rewrites its record never produces a
// second manifest line. The worker's fan-in does not hold them: it adds
// them to a Spool (a temporary file of manifest lines; memory keeps the ids
// that order and deduplicate them), reads the sorted manifest back from it
// into the Summarizer, and renders the report a character at a time with a
// ReportWriter.
package manifest

import "time"

// Status is a task's terminal state.
type Status string

// Terminal states.
const (
	Succeeded       Status = "succeeded"
	Failed          Status = "failed"
	SkippedBudget   Status = "skipped_budget"
	SkippedCanceled Status = "skipped_canceled"
)

// Attempt is one try at a task, kept so a record explains its retries.
type Attempt struct {
	N         int       `json:"n"`
	Seed      int64     `json:"seed"`
	Class     string    `json:"class,omitempty"`
	Error     string    `json:"error,omitempty"`
	RequestID string    `json:"provider_request_id,omitempty"`
	StartedAt time.Time `json:"started_at"`
	// DurationMS is the attempt's wall time in milliseconds.
	DurationMS int64 `json:"duration_ms"`
	// LimitWaitMS is how long the attempt waited for fleet-wide limits
	// (rate, concurrency, cooldown, circuit) before calling the provider.
	LimitWaitMS int64 `json:"limit_wait_ms,omitempty"`
	// CostUSD is what the provider billed for the attempt: the output's
	// price when it produced one (kept or rejected by a check), and for a
	// failure what the provider bills failures, if anything.
	CostUSD float64 `json:"cost_usd,omitempty"`
	// Check names the output check a bad_output attempt failed ("blank",
	// "size", "aspect", ...).
	Check string `json:"check,omitempty"`
	// OutputKey is where a successful attempt's output was stored.
	OutputKey string `json:"output_key,omitempty"`
	// RevisedPrompt is the prompt the provider reports having used.
	RevisedPrompt string `json:"revised_prompt,omitempty"`
}

// Record is one task's outcome: one line of manifest.jsonl.
type Record struct {
	Run        string `json:"run"`
	Task       string `json:"task"`
	Character  string `json:"character"`
	Prompt     string `json:"prompt"`
	PromptText string `json:"prompt_text"`
	Model      string `json:"model"`
	ModelRef   string `json:"model_ref"`
	Provider   string `json:"provider"`
	Variant    int    `json:"variant"`
	// Params are the model parameters the task was made with.
	Params map[string]any `json:"params,omitempty"`
	// BaseSeed is the task's seed from the spec; retries derive theirs from it.
	BaseSeed int64 `json:"base_seed,omitempty"`
	// Seed is the seed of the attempt that produced the output (or the last one tried).
	Seed   int64  `json:"seed"`
	Status Status `json:"status"`
	// ReferenceKey is the character reference's object key.
	ReferenceKey string `json:"reference_key"`
	// EditImageKey and EditMaskKey are the object keys of the image an
	// inpainting prompt repaints and of its mask; empty for other prompts.
	EditImageKey string `json:"edit_image_key,omitempty"`
	EditMaskKey  string `json:"edit_mask_key,omitempty"`
	OutputKey    string `json:"output_key,omitempty"`
	SHA256       string `json:"sha256,omitempty"`
	Width        int    `json:"width,omitempty"`
	Height       int    `json:"height,omitempty"`
	ContentType  string `json:"content_type,omitempty"`
	Bytes        int64  `json:"bytes,omitempty"`
	// ContentKey identifies the exact request (model, params, prompt,
	// reference, seed); a stored record with the same key is a cache hit.
	ContentKey        string    `json:"content_key"`
	Attempts          int       `json:"attempts"`
	AttemptLog        []Attempt `json:"attempt_log,omitempty"`
	ProviderRequestID string    `json:"provider_request_id,omitempty"`
	RevisedPrompt     string    `json:"revised_prompt,omitempty"`
	Tags              []string  `json:"tags,omitempty"`
	TagsError         string    `json:"tags_error,omitempty"`
	CostUSD           float64   `json:"cost_usd"`
	ProviderLatencyMS int64     `json:"provider_latency_ms"`
	QueueWaitMS       int64     `json:"queue_wait_ms"`
	ErrorClass        string    `json:"error_class,omitempty"`
	Error             string    `json:"error,omitempty"`
	StartedAt         time.Time `json:"started_at"`
	FinishedAt        time.Time `json:"finished_at"`
	TraceID           string    `json:"trace_id,omitempty"`
	Cached            bool      `json:"cached"`
	// Worker identifies the worker process that wrote the record (host:pid).
	Worker string `json:"worker,omitempty"`
}

// ModelStats summarises one model's tasks in a run.
type ModelStats struct {
	Model       string  `json:"model"`
	ModelRef    string  `json:"model_ref"`
	Total       int     `json:"total"`
	Succeeded   int     `json:"succeeded"`
	Failed      int     `json:"failed"`
	Skipped     int     `json:"skipped"`
	SuccessRate float64 `json:"success_rate"`
	// Latency percentiles of provider latency over succeeded tasks, in ms.
	LatencyP50MS  int64   `json:"latency_p50_ms"`
	LatencyP95MS  int64   `json:"latency_p95_ms"`
	LatencyMeanMS int64   `json:"latency_mean_ms"`
	Attempts      int     `json:"attempts"`
	CostUSD       float64 `json:"cost_usd"`
	// Returns says what the model can return and what the output checks
	// hold it to (provider.Model.Returns), when the registry knows it.
	Returns string `json:"returns,omitempty"`
}

// Summary is run.json.
type Summary struct {
	Run        string       `json:"run"`
	Name       string       `json:"name"`
	SpecKey    string       `json:"spec_key"`
	Total      int          `json:"total"`
	Succeeded  int          `json:"succeeded"`
	Failed     int          `json:"failed"`
	Skipped    int          `json:"skipped"`
	Cached     int          `json:"cached"`
	CostUSD    float64      `json:"cost_usd"`
	BudgetUSD  float64      `json:"budget_usd,omitempty"`
	CreatedAt  time.Time    `json:"created_at"`
	FinishedAt time.Time    `json:"finished_at"`
	WallS      float64      `json:"wall_s"`
	Models     []ModelStats `json:"models"`
	TraceID    string       `json:"trace_id,omitempty"`
	// UnreadableRecords are the keys of records the fan-in found but could
	// not decode: they are left out of the manifest and the counts above.
	UnreadableRecords []string `json:"unreadable_records,omitempty"`
}
