// Package replicate is the likeness adapter for Replicate's HTTP API
// (https://api.replicate.com/v1): it runs the official image models listed in
// the registry as "replicate:<owner>/<name>" (FLUX.1 Kontext, Ideogram
// Character, Runway Gen-4 Image, SeedEdit 3.0, gpt-image-1) and, through
// Client.Tags, the topic-tags text model used for dataset tagging.
//
// # Lifecycle
//
// A worker calls Client.Generate once per task attempt; the queue owns
// retries, so Generate makes exactly one create request and never retries or
// sleeps except to poll the prediction it created. One call:
//
//  1. maps the neutral provider.Request onto the model's input (see "Inputs"),
//     uploading a large reference once per process via POST /files;
//  2. creates the prediction with POST /models/{owner}/{name}/predictions,
//     asking for sync mode (Prefer: wait=N, Config.Wait) and a server-side
//     deadline (Cancel-After, Config.CancelAfter);
//  3. if the answer carries no output yet, polls urls.get every
//     Config.PollInterval until the prediction ends. An image prediction whose
//     output is present counts as done even while its status is still
//     "processing" (sync mode answers as soon as the files exist);
//  4. downloads the output at once with provider.Fetch (outputs and logs are
//     deleted an hour after completion) and returns it with the prediction id,
//     the registry's list price, the latency and what the logs reveal.
//
// If ctx ends while polling, Generate asks Replicate to cancel the prediction
// (best effort, with a short timeout detached from ctx) so an abandoned
// prediction stops billing. A create request cut off by ctx has no id yet;
// Cancel-After is the backstop that stops such orphans server-side.
//
// # Resuming a paid prediction
//
// When the caller sets Request.OnPending, Generate creates the prediction
// without sync mode (no Prefer: wait, so the create answers at once) and
// reports it (id, urls.get, created_at) before it waits or downloads. The
// price is polling: each such prediction costs 60/PollInterval requests a
// minute of the 3,000 the account shares. Such
// a recorded prediction is never canceled by the adapter: a worker that
// stops waiting (shutdown, crash, deadline) leaves it running, and the
// task's redelivery passes it back as Request.Resume. Generate then makes no
// create: it reads the prediction (urls.get when it points at BaseURL's
// host, else GET /predictions/{id}) and carries on polling and downloading
// as above. A prediction Replicate no longer knows (404), or whose output
// was removed (data_removed, or the download answers 404/410), is an error
// matching provider.ErrGone, and the caller creates a new one; a resumed
// prediction that failed or was canceled is classified as usual.
//
// # Rate budget
//
// Replicate allows 600 creates and 3,000 other requests (polls, cancels,
// uploads) per minute per account, and every worker of a fleet shares both.
// Sync mode usually avoids polling entirely. When Generate polls, it times
// the polls by what the model's predictions have taken lately (every
// PollInterval until it has seen one finish): the first when a prediction
// is usually done at the earliest (the mean less the mean deviation), then
// every half deviation, within 100 ms and a quarter of the mean (at most
// PollInterval). A steady model's prediction costs one or two polls, a
// spread one a few more, and a finished prediction waits about a quarter
// of its model's deviation to be seen, which matters while it holds one
// of the fleet's concurrency slots. Lower PollInterval only for small
// fleets; the registry's Concurrency default (100) assumes 2 s.
//
// # Inputs
//
// The reference image goes to the model's reference field as its
// Reference.URL when that is an http(s) URL on a public host
// (provider.Image.FetchURL; a private bucket URL such as 127.0.0.1:9000 or
// minio:9000 is never sent), as a data: URL when it is at most 256 KiB, and
// otherwise as the urls.get of a POST /files upload, cached per SHA-256 for
// the life of the Client (re-uploaded shortly before the file expires). The
// inpainting image and mask go the same way. Per model:
//
//   - flux-kontext-pro / -max: input_image; safety_tolerance is clamped to 2,
//     the maximum Replicate allows with an input image.
//   - flux-kontext-dev: input_image.
//   - ideogram-character: character_reference_image; with Request.Image set,
//     an inpainting edit: image, and mask converted from likeness's
//     convention (white = repaint) to Ideogram's (black = repaint) by
//     inverting luminance; transparent mask pixels count as black (keep).
//   - gen4-image / -turbo: reference_images and reference_tags with the tag
//     from RunwayTag(Request.Character); when the prompt does not mention
//     "@tag", " (@tag)" is appended so the model uses the reference.
//   - seededit-3.0: image.
//   - gpt-image-1: input_images, number_of_images 1, input_fidelity "high"
//     unless the spec sets it (references are faces), and openai_api_key
//     from Config.OpenAIKey (never from params, never in errors or logs).
//
// Every model except gpt-image-1 receives Request.Seed as seed.
//
// # Logs
//
// Result.Logs is the tail (4 KiB) of the prediction's logs. Result.Seed is
// parsed from a "Using seed: N" line (FLUX models print one), and
// Result.RevisedPrompt from a line such as "Revised prompt: ...",
// "Upsampled prompt: ..." or "Magic prompt: ..." (the exact wording per
// model is unconfirmed; no line, no value).
//
// # Failures
//
// Every failure is a *provider.Error with Provider "replicate", classified by
// HTTP status and body (429 with retry_after → Rate; 401/402/403 → Billing;
// 400/404/413/422 → Input; 5xx and malformed bodies → Transient) or, for a
// failed prediction, by its error text (E005 or NSFW/sensitive/safety →
// Safety; E1001 out of memory → Input; E1000 and anything else → Transient).
package replicate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// ProviderName is the provider part of this adapter's model references
// ("replicate:black-forest-labs/flux-kontext-pro") and the Provider of its
// errors.
const ProviderName = "replicate"

// Defaults applied by New.
const (
	DefaultBaseURL      = "https://api.replicate.com/v1"
	DefaultPollInterval = 2 * time.Second
	DefaultWait         = 60 * time.Second
	DefaultCancelAfter  = 30 * time.Minute
	// DefaultTimeout bounds each HTTP request of the default client; it must
	// exceed Wait, since a sync-mode create is held up to Wait.
	DefaultTimeout = 2 * time.Minute
)

// Limits of Replicate's API that the adapter respects.
const (
	// MaxDataURIBytes is the largest image sent inline as a data: URL;
	// larger ones are uploaded through POST /files.
	MaxDataURIBytes = 256 << 10
	// MaxLogBytes is how much of a prediction's logs Result.Logs keeps.
	MaxLogBytes = 4 << 10
	// maxWait is the longest hold Prefer: wait accepts.
	maxWait = 60 * time.Second
	// minCancelAfter is the shortest deadline Cancel-After accepts.
	minCancelAfter = 5 * time.Second
	// cancelTimeout bounds the best-effort cancel sent after ctx ends.
	cancelTimeout = 5 * time.Second
	// maxPollErrors is how many consecutive failed polls (5xx, 429,
	// network) Generate tolerates before abandoning a prediction.
	maxPollErrors = 3
)

// Config configures a Client. Zero fields take the documented defaults.
type Config struct {
	// BaseURL is the API root. Default DefaultBaseURL; the CLI overrides it
	// from LIKENESS_REPLICATE_BASE_URL.
	BaseURL string
	// APIKey is the Replicate API token (REPLICATE_API_TOKEN, "r8_...").
	// Required. It is sent only in the Authorization header, and only to
	// BaseURL's host.
	APIKey string
	// OpenAIKey is the user's OpenAI key (OPENAI_API_KEY), passed as the
	// openai_api_key input of openai/gpt-image-1 (OpenAI bills that account).
	// Optional: without it, gpt-image-1 requests fail with a Billing error.
	OpenAIKey string
	// HTTPClient sends every request, including output downloads. Default:
	// a client with DefaultTimeout. Its timeout must exceed Wait.
	HTTPClient *http.Client
	// PollInterval is the pause between polls of a running prediction.
	// Default DefaultPollInterval (2 s). Every poll counts against the
	// 3,000/min non-create budget the whole fleet shares; see the package
	// documentation before lowering it.
	PollInterval time.Duration
	// Wait is how long Replicate may hold the create request for the result
	// (sync mode, header "Prefer: wait=N", whole seconds in 1..60). Zero
	// means DefaultWait (60 s); a negative value disables sync mode (no
	// Prefer header: create returns at once and Generate polls).
	Wait time.Duration
	// CancelAfter is the server-side deadline for each prediction, measured
	// from its creation (header Cancel-After, at least 5 s). It stops
	// predictions a crashed or cancelled worker can no longer cancel. Zero
	// means DefaultCancelAfter (30 m); negative sends no header (Replicate's
	// own 30-minute run limit still applies).
	CancelAfter time.Duration
	// Registry prices results and says each model's output kind. Default
	// provider.DefaultRegistry().
	Registry *provider.Registry
}

// Client runs Replicate predictions. It is safe for concurrent use; it keeps
// one piece of state, the cache of uploaded reference files.
type Client struct {
	cfg    Config
	base   *url.URL
	prefer string // Prefer header value, "" when sync mode is off
	cancel string // Cancel-After header value, "" when off

	mu      sync.Mutex
	uploads map[string]*upload // by sha256 of the bytes
	// pace is how long each image model's predictions have taken lately,
	// for timing polls.
	pace map[string]pace
}

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.APIKey == "" {
		return nil, errors.New("replicate: APIKey is required (set REPLICATE_API_TOKEN)")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("replicate: BaseURL %q is not an http(s) URL", cfg.BaseURL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Wait == 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.Wait > maxWait {
		return nil, fmt.Errorf("replicate: Wait %s exceeds Replicate's maximum of %s", cfg.Wait, maxWait)
	}
	if cfg.CancelAfter == 0 {
		cfg.CancelAfter = DefaultCancelAfter
	}
	if cfg.CancelAfter > 0 && cfg.CancelAfter < minCancelAfter {
		return nil, fmt.Errorf("replicate: CancelAfter %s is below Replicate's minimum of %s", cfg.CancelAfter, minCancelAfter)
	}
	if cfg.Registry == nil {
		cfg.Registry = provider.DefaultRegistry()
	}
	c := &Client{cfg: cfg, base: base, uploads: map[string]*upload{}, pace: map[string]pace{}}
	if cfg.Wait > 0 {
		c.prefer = fmt.Sprintf("wait=%d", ceilSeconds(cfg.Wait))
	}
	if cfg.CancelAfter > 0 {
		c.cancel = formatDuration(cfg.CancelAfter)
	}
	return c, nil
}

// Generate runs one prediction for req and returns its downloaded output.
// It makes one create request, or none when req.Resume names a prediction
// an earlier delivery created; see the package documentation for the steps.
func (c *Client) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	m, ok := c.cfg.Registry.Lookup(ProviderName + ":" + req.Model)
	if !ok {
		return nil, c.errorf(provider.Input, "unknown model %q", req.Model)
	}
	if m.Output == provider.OutputText {
		return nil, c.errorf(provider.Input, "%s is a text model; use Client.Tags", req.Model)
	}
	began := time.Now()
	resumed := req.Resume != nil
	var p *prediction
	var err error
	if resumed {
		p, err = c.resume(ctx, *req.Resume)
		if !req.Resume.CreatedAt.IsZero() {
			began = req.Resume.CreatedAt
		}
	} else {
		var input map[string]any
		if input, err = c.input(ctx, m, req); err != nil {
			return nil, err
		}
		// A caller that records predictions to resume them gets no sync
		// mode: a create held for the whole generation would leave a
		// worker that dies meanwhile without the id of what it paid for.
		if p, err = c.create(ctx, req.Model, input, req.OnPending == nil); err == nil && req.OnPending != nil {
			// Before any wait or download: a worker that dies from here on
			// is redelivered with this prediction to resume.
			req.OnPending(c.pending(p, began))
		}
	}
	if err != nil {
		return nil, err
	}
	recorded := resumed || req.OnPending != nil
	if p, err = c.wait(ctx, p, false, recorded, c.expected(req.Model)); err != nil {
		return nil, c.gone(resumed, err)
	}
	c.observe(req.Model, p, time.Since(began))
	out, err := c.outputURL(p)
	if err != nil {
		return nil, err
	}
	img, err := provider.Fetch(ctx, c.cfg.HTTPClient, ProviderName, out)
	if err != nil {
		var pe *provider.Error
		if errors.As(err, &pe) {
			pe.RequestID = p.ID
			if resumed && (pe.Status == http.StatusNotFound || pe.Status == http.StatusGone) {
				return nil, provider.GoneError(ProviderName, p.ID, "the resumed prediction's output was removed: "+pe.Message)
			}
		}
		if recorded {
			return nil, provider.StillPending(err) // the output is paid for; download it later
		}
		return nil, err
	}
	logs := c.redact(p.Logs)
	res := &provider.Result{
		Image:     img,
		RequestID: p.ID,
		CostUSD:   m.Pricing.For(req.Params),
		Latency:   time.Since(began),
		Logs:      trimLogs(logs, MaxLogBytes),
	}
	res.Seed, res.RevisedPrompt = parseLogs(logs)
	return res, nil
}

// errorf returns a *provider.Error of this provider with a redacted message.
func (c *Client) errorf(class provider.Class, format string, args ...any) *provider.Error {
	return &provider.Error{Class: class, Provider: ProviderName, Message: c.redact(fmt.Sprintf(format, args...))}
}

// redact removes the configured secrets from text that came from the
// provider (a validation error or log may echo the inputs, and gpt-image-1's
// inputs hold the user's OpenAI key).
func (c *Client) redact(s string) string {
	for _, k := range []string{c.cfg.APIKey, c.cfg.OpenAIKey} {
		if k != "" {
			s = strings.ReplaceAll(s, k, "[redacted]")
		}
	}
	return s
}

// ceilSeconds rounds d up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// formatDuration writes d in Cancel-After's form: "30m", "1h30m", "45s"
// (rounded up to whole seconds).
func formatDuration(d time.Duration) string {
	s := ceilSeconds(d)
	h, m, sec := s/3600, s/60%60, s%60
	var b strings.Builder
	if h > 0 {
		fmt.Fprintf(&b, "%dh", h)
	}
	if m > 0 {
		fmt.Fprintf(&b, "%dm", m)
	}
	if sec > 0 {
		fmt.Fprintf(&b, "%ds", sec)
	}
	return b.String()
}
