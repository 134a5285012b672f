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
//     character reference as input_image (its URL when the request has one,
//     else base64 of its bytes), the seed and the mapped params;
//  2. polls the polling_url returned by the submit, never a URL built from
//     the task id: BFL's global endpoint routes tasks across clusters and the
//     returned URL points at the one holding the task;
//  3. on Ready, downloads result.sample at once (the signed URL lives about
//     ten minutes) with provider.Fetch, which sniffs the content type.
//
// The API key travels only in the x-key header, on the submit and on the
// polls (as BFL's own clients send it), and is never put into an error.
// BFL has no cancel endpoint: when ctx ends, Generate stops polling and the
// task finishes (and is billed) on BFL's side.
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
	"net/url"
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
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Message: "encode request", Err: err}
	}

	began := time.Now()
	status, hdr, respBody, err := c.do(ctx, http.MethodPost, c.cfg.BaseURL+"/"+model.Name, payload)
	if err != nil {
		return nil, c.transportError("submit", "", err)
	}
	if status != http.StatusOK && status != http.StatusCreated {
		return nil, c.classify(status, hdr, respBody, "")
	}
	var created createResponse
	if err := json.Unmarshal(respBody, &created); err != nil || created.PollingURL == "" {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: status, Code: "malformed_response",
			Message: "submit answer is not {id, polling_url}: " + c.clip(string(respBody)), Err: err}
	}
	pollURL, err := url.Parse(created.PollingURL)
	if err != nil || (pollURL.Scheme != "https" && pollURL.Scheme != "http") || pollURL.Host == "" {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: "malformed_response", RequestID: created.ID,
			Message: "polling_url is not an http(s) URL: " + c.clip(created.PollingURL)}
	}

	ready, err := c.poll(ctx, created.ID, pollURL.String())
	if err != nil {
		return nil, err
	}
	img, err := provider.Fetch(ctx, c.cfg.HTTPClient, ProviderName, ready.Sample)
	if err != nil {
		var pe *provider.Error
		if errors.As(err, &pe) {
			pe.RequestID = created.ID
		}
		return nil, err
	}
	res := &provider.Result{
		Image:     img,
		RequestID: created.ID,
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
	switch {
	case strings.HasPrefix(req.Reference.URL, "https://") || strings.HasPrefix(req.Reference.URL, "http://"):
		body.InputImage = req.Reference.URL
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

// poll waits for the task behind pollURL to leave Pending.
func (c *Client) poll(ctx context.Context, id, pollURL string) (readyResult, error) {
	timer := time.NewTimer(c.cfg.PollInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return readyResult{}, c.transportError("wait for result", id, ctx.Err())
		case <-timer.C:
		}
		status, hdr, body, err := c.do(ctx, http.MethodGet, pollURL, nil)
		if err != nil {
			return readyResult{}, c.transportError("poll", id, err)
		}
		if status == http.StatusNotFound {
			return readyResult{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: status, Code: "task_not_found", RequestID: id,
				Message: "task unknown or expired: " + c.bodyMessage(body)}
		}
		if status != http.StatusOK {
			return readyResult{}, c.classify(status, hdr, body, id)
		}
		var pr pollResponse
		if err := json.Unmarshal(body, &pr); err != nil {
			return readyResult{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: status, Code: "malformed_response", RequestID: id,
				Message: "poll answer is not JSON: " + c.clip(string(body)), Err: err}
		}
		switch pr.Status {
		case statusReady:
			var r readyResult
			if err := json.Unmarshal(pr.Result, &r); err != nil || r.Sample == "" {
				return readyResult{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: "malformed_response", RequestID: id,
					Message: "Ready without result.sample: " + c.clip(string(pr.Result))}
			}
			return r, nil
		case statusRequestModerated:
			return readyResult{}, &provider.Error{Class: provider.Safety, Provider: ProviderName, Code: pr.Status, RequestID: id,
				Message: c.withDetails("input (prompt or image) flagged by BFL moderation before processing", pr)}
		case statusContentModerated:
			return readyResult{}, &provider.Error{Class: provider.Safety, Provider: ProviderName, Code: pr.Status, RequestID: id,
				Message: c.withDetails("output flagged by BFL moderation; another seed may pass", pr)}
		case statusError, statusFailed:
			return readyResult{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: pr.Status, RequestID: id,
				Message: c.withDetails("generation failed", pr)}
		case statusTaskNotFound:
			return readyResult{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: "task_not_found", RequestID: id,
				Message: "task unknown or expired; resubmit"}
		}
		// Pending, and any status BFL may add later, keep polling; ctx
		// bounds the wait.
		timer.Reset(c.cfg.PollInterval)
	}
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

// transportError wraps a failure to get an HTTP answer (network error, ctx
// done) as a Transient error; errors.Is(err, context.DeadlineExceeded) still
// works through Unwrap.
func (c *Client) transportError(op, id string, err error) error {
	msg := op + ": no answer"
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		msg = op + ": gave up (context done)"
	}
	return &provider.Error{Class: provider.Transient, Provider: ProviderName, RequestID: id, Message: msg, Err: redactErr(err, c.cfg.APIKey)}
}

// Classify maps a non-2xx BFL answer to a *provider.Error. It is exported
// for the worker's diagnostics and tests; Generate uses it for every HTTP
// failure. rateWait is the wait reported on a 429 without a hint.
func Classify(status int, header http.Header, body []byte, rateWait time.Duration) *provider.Error {
	e := &provider.Error{Provider: ProviderName, Status: status}
	var b errorBody
	_ = json.Unmarshal(body, &b)
	e.Code = b.code()
	e.Message = b.message(body)
	switch {
	case status == http.StatusTooManyRequests:
		e.Class = provider.Rate
		e.RetryAfter = provider.RetryAfter(header, time.Now())
		if e.RetryAfter == 0 && b.RetryAfter > 0 {
			e.RetryAfter = time.Duration(b.RetryAfter * float64(time.Second))
		}
		if e.RetryAfter == 0 {
			e.RetryAfter = rateWait
		}
	case status == http.StatusPaymentRequired, status == http.StatusUnauthorized, status == http.StatusForbidden:
		e.Class = provider.Billing
	case status == http.StatusRequestTimeout:
		e.Class = provider.Transient
	case status >= 400 && status < 500:
		// 400, 422 (schema), 404 (unknown endpoint), 413 (image too large).
		e.Class = provider.Input
	default:
		e.Class = provider.Transient
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

func (c *Client) classify(status int, header http.Header, body []byte, id string) *provider.Error {
	e := Classify(status, header, body, c.cfg.DefaultRateWait)
	e.RequestID = id
	e.Message = c.clip(e.Message)
	return e
}

// errorBody covers BFL's error shapes: FastAPI's {"detail": "..."} and
// {"detail": [{"loc": [...], "msg": "..."}]}, and the integration guide's
// {"error": "rate_limit_exceeded", "message": "...", "retry_after": 5}.
type errorBody struct {
	Detail     json.RawMessage `json:"detail"`
	Error      json.RawMessage `json:"error"`
	Message    string          `json:"message"`
	RetryAfter float64         `json:"retry_after"`
}

func (b errorBody) code() string {
	var s string
	if json.Unmarshal(b.Error, &s) == nil && !strings.Contains(s, " ") {
		return s
	}
	return ""
}

func (b errorBody) message(raw []byte) string {
	var parts []string
	if b.Message != "" {
		parts = append(parts, b.Message)
	}
	var s string
	if json.Unmarshal(b.Detail, &s) == nil && s != "" {
		parts = append(parts, s)
	} else {
		var items []struct {
			Loc []any  `json:"loc"`
			Msg string `json:"msg"`
		}
		if json.Unmarshal(b.Detail, &items) == nil {
			for _, it := range items {
				loc := make([]string, 0, len(it.Loc))
				for _, l := range it.Loc {
					loc = append(loc, fmt.Sprint(l))
				}
				parts = append(parts, strings.TrimPrefix(strings.Join(loc, ".")+": ", ": ")+it.Msg)
			}
		}
	}
	if len(parts) == 0 && json.Unmarshal(b.Error, &s) == nil && strings.Contains(s, " ") {
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return strings.TrimSpace(string(raw))
	}
	return strings.Join(parts, "; ")
}

// withDetails appends a poll answer's details (moderation reasons, error
// text) to msg.
func (c *Client) withDetails(msg string, pr pollResponse) string {
	for _, raw := range []json.RawMessage{pr.Details, pr.Error} {
		if s := compact(raw); s != "" {
			msg += ": " + s
		}
	}
	return c.clip(msg)
}

func (c *Client) bodyMessage(body []byte) string {
	var b errorBody
	_ = json.Unmarshal(body, &b)
	return c.clip(b.message(body))
}

// clip shortens provider text for an error message and removes the key,
// should a provider ever echo it.
func (c *Client) clip(s string) string {
	if c.cfg.APIKey != "" {
		s = strings.ReplaceAll(s, c.cfg.APIKey, "[redacted]")
	}
	return truncate(s, 300)
}

func compact(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// redactErr keeps err's chain but hides the key from its text, should a
// transport error ever quote it.
func redactErr(err error, key string) error {
	if err == nil || key == "" || !strings.Contains(err.Error(), key) {
		return err
	}
	return &redacted{err: err, msg: strings.ReplaceAll(err.Error(), key, "[redacted]")}
}

type redacted struct {
	err error
	msg string
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	case uint64:
		return int(n), true
	}
	return 0, false
}
