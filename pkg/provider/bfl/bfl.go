// Package bfl is the adapter for Black Forest Labs' own API (FLUX.1 Kontext
// [pro] and [max]), behind the bfl:flux-kontext-pro and bfl:flux-kontext-max
// models.
//
// # Lifecycle
//
// A worker calls Client.Generate once per task attempt; the queue owns
// retries, so Generate makes exactly one submit and never retries or sleeps
// except between polls of the task it created. One call:
//
//  1. POST {BaseURL}/flux-kontext-pro (or -max) with the prompt, the
//     character reference as input_image (its URL when BFL could fetch it,
//     see provider.Image.FetchURL, else base64 of its bytes: a private bucket
//     URL is never sent), the seed and the mapped params;
//  2. reports the task (id, polling_url) to Request.OnPending, then polls
//     the polling_url returned by the submit, never a URL built from the
//     task id: BFL's global endpoint routes tasks across clusters and the
//     returned URL points at the one holding the task. The key is sent only
//     to a polling_url on BaseURL's host or on bfl.ai;
//  3. on Ready, downloads result.sample at once (the signed URL lives about
//     ten minutes) with provider.Fetch, which sniffs the content type.
//
// The API key travels only in the x-key header, on the submit and on the
// polls (as BFL's own clients send it), and is never put into an error.
// BFL has no cancel endpoint: when ctx ends, Generate stops polling and the
// task finishes (and is billed) on BFL's side.
//
// # Resuming a paid task
//
// With Request.Resume set (a task an earlier delivery submitted and reported
// through OnPending), Generate submits nothing: it polls the recorded
// polling_url (when it passes the host check above; else
// BaseURL/get_result?id=) at once and downloads the result as above. A task
// BFL no longer knows (404, "Task not found") or whose result.sample has
// expired (404/410; it lives about ten minutes) is an error matching
// provider.ErrGone, and the caller submits a new one.
//
// # Failure classes
//
// HTTP 400 and 422 are Input; 401 and 403 (bad key, no access) and 402 (no
// credits) are Billing; 429 (too many active tasks) is Rate, waiting the
// Retry-After header, else the body's retry_after, else
// Config.DefaultRateWait; 404 on submit is Input (unknown endpoint); 5xx,
// timeouts and malformed answers are Transient. Poll statuses: "Request
// Moderated" and "Content Moderated" are Safety, "Error"/"Failed" and "Task
// not found" (expired or lost task) are Transient. See Classify.
//
// # Limits
//
// BFL limits active tasks, not requests per minute: 24 per account, of which
// at most 6 may be Kontext [max]. The registry declares both (Limits keys
// "bfl" and "bfl:flux-kontext-max"); a task occupies a slot from submit until
// it leaves Pending, i.e. for the whole Generate call.
package bfl

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// ProviderName is the provider part of the adapter's model references
// ("bfl:flux-kontext-pro") and the Provider of its errors.
const ProviderName = "bfl"

// Defaults applied by New.
const (
	// DefaultBaseURL is BFL's global endpoint, including the version prefix.
	// Regional hosts (https://api.eu.bfl.ai/v1, https://api.us.bfl.ai/v1)
	// work the same way.
	DefaultBaseURL = "https://api.bfl.ai/v1"
	// DefaultPollInterval is the wait before each poll; BFL suggests starting
	// around one second (Kontext [pro] takes ~5 s).
	DefaultPollInterval = time.Second
	// DefaultRateWait is the wait asked for on a 429 that carries neither a
	// Retry-After header nor a retry_after field: the value of BFL's own
	// integration-guide example. An active-task slot frees when any task
	// finishes, which takes seconds.
	DefaultRateWait = 5 * time.Second
	// DefaultTimeout bounds each HTTP request of the default client (submit
	// with a base64 image, one poll, one download).
	DefaultTimeout = 2 * time.Minute
)

// maxSafetyWithImage is the highest safety_tolerance BFL accepts when an
// input image is sent (Replicate's schema and BFL's docs).
const maxSafetyWithImage = 2

// maxErrorBody caps how much of an API answer is read.
const maxErrorBody = 1 << 20

// Config configures a Client. Zero fields take the documented defaults.
type Config struct {
	// BaseURL is the API root including "/v1". Default DefaultBaseURL; the
	// CLI overrides it from LIKENESS_BFL_BASE_URL.
	BaseURL string
	// APIKey is the BFL API key, sent as x-key. Required; the CLI reads it
	// from BFL_API_KEY. It is never logged or put into an error.
	APIKey string
	// HTTPClient sends every request, including the output download.
	// Default: a client with DefaultTimeout. Tests and telemetry inject
	// their own.
	HTTPClient *http.Client
	// PollInterval is the wait before each poll. Default
	// DefaultPollInterval; tests use ~10ms.
	PollInterval time.Duration
	// DefaultRateWait is the wait reported on a 429 without a hint. Default
	// DefaultRateWait.
	DefaultRateWait time.Duration
}

// Client generates images with FLUX.1 Kontext on the BFL API. It is safe for
// concurrent use.
type Client struct {
	cfg      Config
	registry *provider.Registry
}

// New returns a Client for cfg, with defaults applied to a copy. It fails
// when the API key is missing or the base URL is not an http(s) URL.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, errors.New("bfl: APIKey is required (set BFL_API_KEY)")
	}
	base, err := provider.BaseURL("bfl", cfg.BaseURL, DefaultBaseURL)
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
	return &Client{cfg: cfg, registry: provider.DefaultRegistry()}, nil
}

// createRequest is the JSON body of POST /flux-kontext-{pro,max}.
type createRequest struct {
	Prompt           string `json:"prompt"`
	InputImage       string `json:"input_image,omitempty"`
	Seed             int64  `json:"seed"`
	AspectRatio      string `json:"aspect_ratio,omitempty"`
	OutputFormat     string `json:"output_format,omitempty"`
	SafetyTolerance  *int   `json:"safety_tolerance,omitempty"`
	PromptUpsampling *bool  `json:"prompt_upsampling,omitempty"`
}

// createResponse is the submit answer.
type createResponse struct {
	ID         string `json:"id"`
	PollingURL string `json:"polling_url"`
}

// pollResponse is the get_result answer.
type pollResponse struct {
	ID      string          `json:"id"`
	Status  string          `json:"status"`
	Result  json.RawMessage `json:"result"`
	Details json.RawMessage `json:"details"`
	Error   json.RawMessage `json:"error"`
}

// readyResult is pollResponse.Result once the status is Ready.
type readyResult struct {
	Sample string `json:"sample"`
	Prompt string `json:"prompt"`
	Seed   *int64 `json:"seed"`
}

// Poll statuses (docs.bfl.ai, "Errors" and get_result).
const (
	statusPending          = "Pending"
	statusReady            = "Ready"
	statusRequestModerated = "Request Moderated"
	statusContentModerated = "Content Moderated"
	statusError            = "Error"
	statusFailed           = "Failed"
	statusTaskNotFound     = "Task not found"
)

// Generate runs one FLUX.1 Kontext task for req and returns its downloaded
// output. req.Model is "flux-kontext-pro" or "flux-kontext-max".
//
// Param mapping: aspect_ratio "match_input_image" is omitted (BFL's default
// is the input image's ratio), other values pass through; output_format
// "jpg" becomes BFL's "jpeg"; safety_tolerance is clamped to 2 when an input
// image is sent, which BFL requires (the registry already caps it at 2 for
// specs); prompt_upsampling passes through. Masked inpainting (req.Image) is
// not offered by Kontext and is an Input error.
//
// Errors are *provider.Error classified as described in the package doc;
// a ctx that ends while waiting is a Transient error wrapping ctx.Err().
func (c *Client) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	body, model, err := c.buildRequest(req)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	var id, pollURL string
	resumed := req.Resume != nil
	if resumed {
		p := *req.Resume
		if p.Provider != ProviderName || p.ID == "" {
			return nil, provider.GoneError(ProviderName, p.ID, "nothing to resume: the pending request is not a BFL task ("+p.Provider+")")
		}
		id, pollURL = p.ID, c.resumeURL(p)
		if !p.CreatedAt.IsZero() {
			began = p.CreatedAt
		}
	} else {
		created, err := c.submit(ctx, body, model)
		if err != nil {
			return nil, err
		}
		id, pollURL = created.ID, created.PollingURL
		if req.OnPending != nil {
			req.OnPending(provider.Pending{Provider: ProviderName, ID: id, PollURL: pollURL, CreatedAt: began.UTC()})
		}
	}

	recorded := resumed || req.OnPending != nil
	ready, err := c.poll(ctx, id, pollURL, resumed, recorded)
	if err != nil {
		return nil, err
	}
	img, err := provider.Fetch(ctx, c.cfg.HTTPClient, ProviderName, ready.Sample)
	if err != nil {
		var pe *provider.Error
		if errors.As(err, &pe) {
			pe.RequestID = id
			if resumed && (pe.Status == http.StatusNotFound || pe.Status == http.StatusGone) {
				return nil, provider.GoneError(ProviderName, id, "the resumed task's result.sample has expired: "+pe.Message)
			}
		}
		if recorded {
			return nil, provider.StillPending(err)
		}
		return nil, err
	}
	res := &provider.Result{
		Image:     img,
		RequestID: id,
		CostUSD:   model.Pricing.For(req.Params),
		Latency:   time.Since(began),
	}
	if ready.Seed != nil {
		res.Seed = *ready.Seed
	}
	if ready.Prompt != "" && ready.Prompt != req.Prompt {
		res.RevisedPrompt = ready.Prompt
	}
	return res, nil
}

// submit sends the task and returns its id and checked polling_url.
func (c *Client) submit(ctx context.Context, body createRequest, model provider.Model) (createResponse, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return createResponse{}, &provider.Error{Class: provider.Input, Provider: ProviderName, Message: "encode request", Err: err}
	}
	status, hdr, respBody, err := c.do(ctx, http.MethodPost, c.cfg.BaseURL+"/"+model.Name, payload)
	if err != nil {
		return createResponse{}, c.transportError("submit", "", err)
	}
	if status != http.StatusOK && status != http.StatusCreated {
		return createResponse{}, c.classify(status, hdr, respBody, "")
	}
	var created createResponse
	if err := json.Unmarshal(respBody, &created); err != nil || created.PollingURL == "" {
		return createResponse{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: status, Code: "malformed_response",
			Message: "submit answer is not {id, polling_url}: " + c.clip(string(respBody)), Err: err}
	}
	u := c.pollingURL(created.PollingURL)
	if u == "" {
		// The key goes only to BFL: a polling_url elsewhere is not followed.
		return createResponse{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: "malformed_response", RequestID: created.ID,
			Message: "polling_url is not an http(s) URL on BFL's API: " + c.clip(created.PollingURL)}
	}
	created.PollingURL = u
	return created, nil
}

// buildRequest validates req against the registry and maps it to the wire
// body.
func (c *Client) buildRequest(req provider.Request) (createRequest, provider.Model, error) {
	inputErr := func(code, msg string) error {
		return &provider.Error{Class: provider.Input, Provider: ProviderName, Code: code, Message: msg}
	}
	ref := ProviderName + ":" + req.Model
	if _, ok := c.registry.Lookup(ref); !ok {
		return createRequest{}, provider.Model{}, inputErr("unknown_model", fmt.Sprintf("unknown model %q (known: flux-kontext-pro, flux-kontext-max)", req.Model))
	}
	if req.Image != nil {
		return createRequest{}, provider.Model{}, inputErr("unsupported", "FLUX.1 Kontext on the BFL API has no masked inpainting; describe the edit in the prompt instead")
	}
	if strings.TrimSpace(req.Prompt) == "" {
		return createRequest{}, provider.Model{}, inputErr("invalid_prompt", "prompt is empty")
	}

	body := createRequest{Prompt: req.Prompt, Seed: req.Seed}
	switch u := req.Reference.FetchURL(); {
	case strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://"):
		// A URL BFL could fetch: a public one, or all there is. A private
		// bucket URL is never sent when the bytes are at hand.
		body.InputImage = u
	case len(req.Reference.Data) > 0:
		body.InputImage = base64.StdEncoding.EncodeToString(req.Reference.Data)
	}
	hasImage := body.InputImage != ""

	// Clamp before validating, so a request built outside the spec path
	// with a tolerance above BFL's image limit is sent at the limit rather
	// than rejected.
	params := make(map[string]any, len(req.Params))
	for k, v := range req.Params {
		params[k] = v
	}
	if v, ok := params["safety_tolerance"]; ok && hasImage {
		if n, ok := toInt(v); ok && n > maxSafetyWithImage {
			params["safety_tolerance"] = maxSafetyWithImage
		}
	}
	model, err := c.registry.Resolve(ref, params)
	if err != nil {
		return createRequest{}, provider.Model{}, &provider.Error{Class: provider.Input, Provider: ProviderName, Code: "invalid_param", Message: err.Error(), Err: err}
	}

	if v, ok := params["aspect_ratio"].(string); ok && v != "match_input_image" {
		body.AspectRatio = v
	}
	if v, ok := params["output_format"].(string); ok {
		if v == "jpg" {
			v = "jpeg"
		}
		body.OutputFormat = v
	}
	if v, ok := params["safety_tolerance"]; ok {
		n, _ := toInt(v)
		body.SafetyTolerance = &n
	}
	if v, ok := params["prompt_upsampling"].(bool); ok {
		body.PromptUpsampling = &v
	}
	return body, model, nil
}

// do sends one request with the key header and reads the answer.
func (c *Client) do(ctx context.Context, method, u string, body []byte) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("x-key", c.cfg.APIKey)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, data, nil
}
