// Package runway is the adapter for Runway's API (Gen-4 Image and Gen-4
// Image Turbo), behind the runway:gen4_image and runway:gen4_image_turbo
// models.
//
// # Lifecycle
//
// A worker calls Client.Generate once per task attempt; the queue owns
// retries, so Generate makes exactly one submit and never retries or sleeps
// except between polls of the task it created. One call:
//
//  1. POST {BaseURL}/v1/text_to_image with the model, the prompt, the ratio
//     mapped from aspect_ratio and resolution, the seed, and the character
//     reference as referenceImages[0] tagged with a tag derived from
//     req.Character (see Tag); the prompt is made to mention @tag. The
//     reference goes as a public https URL when it has one, else as a data
//     URI (at most 5 MB), else through an ephemeral upload (POST
//     /v1/uploads, then the file to the presigned form it returns, without
//     the key) as its runway:// URI;
//  2. polls GET /v1/tasks/{id} every PollInterval (Runway updates tasks
//     about every 5 s) through PENDING, THROTTLED and RUNNING;
//  3. on SUCCEEDED downloads output[0] at once with provider.Fetch. If that
//     URL has expired (404/403/410), it fetches the task once more, since
//     Runway hands out fresh URLs on every fetch, and downloads the new one;
//     a second failure is Transient.
//
// If Generate gives up on a task that has not finished (ctx done, a failed
// poll), it sends DELETE /v1/tasks/{id}, best effort and bounded by
// Config.CancelTimeout, so the abandoned task stops occupying one of the
// account's concurrency slots; unless the caller recorded the task (see
// below), in which case it is left running for the redelivery.
//
// # Resuming a paid task
//
// When the caller sets Request.OnPending, Generate reports the task id right
// after the submit is accepted, before it polls. With Request.Resume set to
// such a task, Generate submits nothing: it polls GET /v1/tasks/{id} at once
// and downloads the output as above (Runway re-issues output URLs on every
// fetch of the task, so a finished task's output can be downloaded again
// within its 24-48 h). A task Runway no longer has (404: deleted, purged) is
// an error matching provider.ErrGone, and the caller submits a new one; a
// resumed task that FAILED or was CANCELLED is classified as usual.
//
// Every request carries Authorization: Bearer <key> and X-Runway-Version:
// 2024-11-06. The key is never put into an error.
//
// # Concurrency and THROTTLED
//
// Runway limits concurrent tasks per model by tier (tier 1: 1-2, up to 20 at
// tier 5) and does not reject excess tasks: they wait as THROTTLED. That is
// not a failure, and Generate keeps polling, but the wait counts against the
// attempt's deadline. Size the worker fleet's concurrency for each model to
// the account's tier (the registry's Limits default to tier 1: 2 per model)
// so tasks do not pile up in THROTTLED.
//
// # Failure classes
//
// HTTP: 400 is Input (Billing when the body says the credits ran out), 401
// and 403 are Billing, 404 and 405 are Input (404 while polling our own task
// means it was deleted: Transient), 429 (daily generation cap) is Rate,
// waiting Retry-After when present, else Config.DefaultRateWait; 5xx,
// timeouts and malformed answers are Transient. Task failureCode: SAFETY.*
// and INPUT_PREPROCESSING.SAFETY.* are Safety, ASSET.INVALID is Input,
// INTERNAL.BAD_OUTPUT.*, INPUT_PREPROCESSING.INTERNAL and INTERNAL are
// Transient (as is any unknown code); a CANCELLED task is Transient. See
// Classify and ClassifyFailure.
package runway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // reference formats Runway accepts, for the aspect check
	_ "image/png"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf16"

	_ "golang.org/x/image/webp"

	"github.com/likeness-run/likeness/pkg/provider"
)

// ProviderName is the provider part of the adapter's model references
// ("runway:gen4_image") and the Provider of its errors.
const ProviderName = "runway"

// Protocol constants and defaults applied by New.
const (
	// DefaultBaseURL is Runway's developer API (not api.runwayml.com).
	DefaultBaseURL = "https://api.dev.runwayml.com"
	// APIVersion is the X-Runway-Version every request must carry.
	APIVersion = "2024-11-06"
	// DefaultPollInterval is the wait before each poll: Runway does not
	// update a task more often than about every 5 s.
	DefaultPollInterval = 5 * time.Second
	// DefaultRateWait is the wait reported on a 429 without Retry-After.
	// Runway's 429 means the rolling 24-hour generation cap was reached, so
	// the wait is long; slots come back as old generations age out.
	DefaultRateWait = 5 * time.Minute
	// DefaultCancelTimeout bounds the best-effort DELETE of an abandoned task.
	DefaultCancelTimeout = 10 * time.Second
	// DefaultTimeout bounds each HTTP request of the default client.
	DefaultTimeout = 2 * time.Minute
)

// Input limits from Runway's docs.
const (
	// MaxDataURIBytes is the largest reference Runway takes as a data URI
	// (5 MB, counted on the encoded URI to stay on the safe side). Larger
	// references need an https URL (provider.Image.URL).
	MaxDataURIBytes = 5_000_000
	// MaxUploadBytes is the largest reference sent through Runway's
	// ephemeral upload (POST /v1/uploads), used for references too large
	// for a data URI when no public URL is at hand.
	MaxUploadBytes = 200_000_000
	// MaxPromptUnits is the promptText limit in UTF-16 code units.
	MaxPromptUnits = 1000
	// MinReferenceAspect and MaxReferenceAspect bound a reference image's
	// width/height.
	MinReferenceAspect = 0.5
	MaxReferenceAspect = 2.0
)

// maxBody caps how much of an API answer is read.
const maxBody = 1 << 20

// Task statuses.
const (
	statusPending   = "PENDING"
	statusThrottled = "THROTTLED"
	statusRunning   = "RUNNING"
	statusSucceeded = "SUCCEEDED"
	statusFailed    = "FAILED"
	statusCancelled = "CANCELLED"
)

// Config configures a Client. Zero fields take the documented defaults.
type Config struct {
	// BaseURL is the API root, without "/v1". Default DefaultBaseURL; the
	// CLI overrides it from LIKENESS_RUNWAY_BASE_URL.
	BaseURL string
	// APIKey is the Runway API secret (key_...), sent as a Bearer token.
	// Required; the CLI reads it from RUNWAYML_API_SECRET. Never logged.
	APIKey string
	// HTTPClient sends every request, including the output download.
	// Default: a client with DefaultTimeout.
	HTTPClient *http.Client
	// PollInterval is the wait before each poll. Default
	// DefaultPollInterval; tests use ~10ms.
	PollInterval time.Duration
	// DefaultRateWait is the wait reported on a 429 without Retry-After.
	// Default DefaultRateWait.
	DefaultRateWait time.Duration
	// CancelTimeout bounds the DELETE sent for an abandoned task. Default
	// DefaultCancelTimeout.
	CancelTimeout time.Duration
}

// Client generates images with Runway Gen-4 Image. It is safe for
// concurrent use.
type Client struct {
	cfg      Config
	registry *provider.Registry
}

// New returns a Client for cfg, with defaults applied to a copy. It fails
// when the API key is missing or the base URL is not an http(s) URL.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, errors.New("runway: APIKey is required (set RUNWAYML_API_SECRET)")
	}
	base, err := provider.BaseURL("runway", cfg.BaseURL, DefaultBaseURL)
	if err != nil {
		return nil, err
	}
	cfg.BaseURL = base
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.DefaultRateWait <= 0 {
		cfg.DefaultRateWait = DefaultRateWait
	}
	if cfg.CancelTimeout <= 0 {
		cfg.CancelTimeout = DefaultCancelTimeout
	}
	return &Client{cfg: cfg, registry: provider.DefaultRegistry()}, nil
}

// createRequest is the JSON body of POST /v1/text_to_image.
type createRequest struct {
	Model           string           `json:"model"`
	PromptText      string           `json:"promptText"`
	Ratio           string           `json:"ratio"`
	ReferenceImages []referenceImage `json:"referenceImages,omitempty"`
	Seed            int64            `json:"seed"`
}

type referenceImage struct {
	URI string `json:"uri"`
	Tag string `json:"tag,omitempty"`
}

// task is the answer of GET /v1/tasks/{id}.
type task struct {
	ID          string   `json:"id"`
	Status      string   `json:"status"`
	Output      []string `json:"output"`
	Failure     string   `json:"failure"`
	FailureCode string   `json:"failureCode"`
}

// Generate runs one Gen-4 Image task for req and returns its downloaded
// output. req.Model is "gen4_image" or "gen4_image_turbo".
//
// The reference is sent as its https URL when Runway could fetch it
// (provider.Image.FetchURL: a public host, or no bytes to send instead;
// Runway fetches it after a HEAD check that some presigned GET-only URLs
// fail), else as a data URI of req.Reference.Data (at most MaxDataURIBytes).
// A private bucket URL is never sent.
// A reference whose aspect ratio is outside 0.5..2, an aspect_ratio with no
// Runway size, a missing reference for the Turbo model, masked inpainting
// (req.Image) and a prompt over 1000 UTF-16 units are Input errors, returned
// before anything is sent.
//
// Result.RevisedPrompt is the promptText sent when the adapter changed the
// prompt (the @tag added or rewritten). Runway reports no seed.
func (c *Client) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	body, model, err := c.buildRequest(req)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	var id string
	resumed := req.Resume != nil
	if resumed {
		p := *req.Resume
		if p.Provider != ProviderName || p.ID == "" {
			return nil, provider.GoneError(ProviderName, p.ID, "nothing to resume: the pending request is not a Runway task ("+p.Provider+")")
		}
		id = p.ID
		if !p.CreatedAt.IsZero() {
			began = p.CreatedAt
		}
	} else {
		if len(body.ReferenceImages) > 0 && body.ReferenceImages[0].URI == "" {
			if body.ReferenceImages[0].URI, err = c.upload(ctx, req.Reference.Data); err != nil {
				return nil, err
			}
		}
		if id, err = c.submit(ctx, body); err != nil {
			return nil, err
		}
		if req.OnPending != nil {
			req.OnPending(provider.Pending{Provider: ProviderName, ID: id, CreatedAt: began.UTC()})
		}
	}

	// A task the caller recorded (OnPending, Resume) is left running when
	// Generate gives up: its redelivery resumes it. Others are deleted so
	// they stop holding a concurrency slot.
	done := resumed || req.OnPending != nil
	defer func() {
		if !done {
			c.cancel(ctx, id)
		}
	}()
	t, err := c.wait(ctx, id, &done, resumed)
	if err != nil {
		return nil, err
	}
	img, err := c.download(ctx, id, t, resumed)
	if err != nil {
		return nil, err
	}
	res := &provider.Result{
		Image:     img,
		RequestID: id,
		CostUSD:   model.Pricing.For(req.Params),
		Latency:   time.Since(began),
	}
	if body.PromptText != req.Prompt {
		res.RevisedPrompt = body.PromptText
	}
	return res, nil
}

// submit creates the task and returns its id.
func (c *Client) submit(ctx context.Context, body createRequest) (string, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return "", &provider.Error{Class: provider.Input, Provider: ProviderName, Message: "encode request", Err: err}
	}
	status, hdr, respBody, err := c.do(ctx, http.MethodPost, c.cfg.BaseURL+"/v1/text_to_image", payload)
	if err != nil {
		return "", c.transportError("submit", "", err)
	}
	if status < 200 || status > 299 {
		return "", c.classify(status, hdr, respBody, "")
	}
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(respBody, &created); err != nil || created.ID == "" {
		return "", &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: status, Code: "malformed_response",
			Message: "submit answer is not {id}: " + c.clip(string(respBody)), Err: err}
	}
	return created.ID, nil
}

// buildRequest validates req and maps it to the wire body.
func (c *Client) buildRequest(req provider.Request) (createRequest, provider.Model, error) {
	inputErr := func(code, msg string) error {
		return &provider.Error{Class: provider.Input, Provider: ProviderName, Code: code, Message: msg}
	}
	ref := ProviderName + ":" + req.Model
	if _, ok := c.registry.Lookup(ref); !ok {
		return createRequest{}, provider.Model{}, inputErr("unknown_model", fmt.Sprintf("unknown model %q (known: gen4_image, gen4_image_turbo)", req.Model))
	}
	model, err := c.registry.Resolve(ref, req.Params)
	if err != nil {
		return createRequest{}, provider.Model{}, &provider.Error{Class: provider.Input, Provider: ProviderName, Code: "invalid_param", Message: err.Error(), Err: err}
	}
	if req.Image != nil {
		return createRequest{}, provider.Model{}, inputErr("unsupported", "Runway Gen-4 Image has no masked inpainting; describe the change in the prompt instead")
	}
	aspect, _ := req.Params["aspect_ratio"].(string)
	resolution, _ := req.Params["resolution"].(string)
	ratio, err := Ratio(aspect, resolution)
	if err != nil {
		return createRequest{}, provider.Model{}, inputErr("invalid_ratio", err.Error())
	}

	body := createRequest{Model: model.Name, PromptText: req.Prompt, Ratio: ratio, Seed: req.Seed}
	uri, upload, err := referenceURI(req.Reference)
	if err != nil {
		return createRequest{}, provider.Model{}, inputErr("invalid_reference", err.Error())
	}
	switch {
	case uri != "" || upload:
		// An upload's runway:// URI is filled in by Generate, just before
		// the submit (a resumed task needs none).
		tag := Tag(req.Character)
		body.ReferenceImages = []referenceImage{{URI: uri, Tag: tag}}
		body.PromptText = PromptWithTag(req.Prompt, req.Character, tag)
	case model.Name == "gen4_image_turbo":
		return createRequest{}, provider.Model{}, inputErr("invalid_reference", "gen4_image_turbo needs a reference image")
	}
	if strings.TrimSpace(body.PromptText) == "" {
		return createRequest{}, provider.Model{}, inputErr("invalid_prompt", "prompt is empty")
	}
	if n := len(utf16.Encode([]rune(body.PromptText))); n > MaxPromptUnits {
		return createRequest{}, provider.Model{}, inputErr("invalid_prompt", fmt.Sprintf("prompt is %d UTF-16 units with its @tag; Runway takes at most %d", n, MaxPromptUnits))
	}
	return body, model, nil
}

// referenceURI returns the reference as Runway takes it: an https URL, or a
// data URI of at most MaxDataURIBytes; "" when there is no reference. It
// reports upload instead when the bytes are too large for a data URI but
// within MaxUploadBytes: they go through Runway's ephemeral upload.
func referenceURI(img provider.Image) (uri string, upload bool, err error) {
	uri, err = referenceInline(img)
	var big *tooBig
	if errors.As(err, &big) && big.bytes <= MaxUploadBytes {
		return "", true, nil
	}
	return uri, false, err
}

// tooBig is referenceInline's error for bytes over the data URI limit.
type tooBig struct{ bytes, uri int }

func (e *tooBig) Error() string {
	return fmt.Sprintf("reference is %.1f MB as a data URI and %.1f MB in all; Runway takes at most 5 MB as a data URI and %d MB by upload",
		float64(e.uri)/1e6, float64(e.bytes)/1e6, MaxUploadBytes/1_000_000)
}

// referenceInline is referenceURI without the upload.
func referenceInline(img provider.Image) (string, error) {
	if len(img.Data) > 0 {
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(img.Data)); err == nil && cfg.Height > 0 {
			if a := float64(cfg.Width) / float64(cfg.Height); a < MinReferenceAspect || a > MaxReferenceAspect {
				return "", fmt.Errorf("reference is %dx%d (aspect %.2f); Runway takes references with width/height between %.1f and %.1f", cfg.Width, cfg.Height, a, MinReferenceAspect, MaxReferenceAspect)
			}
		}
	}
	if u := img.FetchURL(); strings.HasPrefix(u, "https://") {
		// A URL Runway could fetch: a public one, or all there is. A
		// private bucket URL is never sent when the bytes are at hand.
		return u, nil
	}
	if len(img.Data) == 0 {
		if img.URL != "" {
			return "", fmt.Errorf("reference URL must be https for Runway")
		}
		return "", nil
	}
	switch ct := http.DetectContentType(img.Data); ct {
	case "image/png", "image/jpeg", "image/webp":
	default:
		return "", fmt.Errorf("reference is %s; Runway takes JPEG, PNG or WebP", ct)
	}
	uri := provider.DataURI(img.Data)
	if len(uri) > MaxDataURIBytes {
		return "", &tooBig{bytes: len(img.Data), uri: len(uri)}
	}
	return uri, nil
}

// do sends one request with Runway's headers and reads the answer.
func (c *Client) do(ctx context.Context, method, u string, body []byte) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	req.Header.Set("X-Runway-Version", APIVersion)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, data, nil
}
