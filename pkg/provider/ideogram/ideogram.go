// Package ideogram is the adapter for Ideogram's own API (provider
// "ideogram"), serving ideogram:ideogram-3-character: Ideogram 3.0 with one
// character reference image.
//
// In the task lifecycle the worker calls Generate once per attempt and the
// queue owns retries, so Generate makes exactly one HTTP request to Ideogram
// and never retries or sleeps. Ideogram's v1 endpoints are synchronous: the
// request is held open until the image exists (budget one to two minutes),
// so there is nothing to poll and nothing to cancel remotely; cancelling ctx
// abandons the request. The output link is temporary, so Generate downloads
// it at once.
//
// Wire protocol (shared/providers.md section 5):
//
//   - Auth is the header "Api-Key: <key>", not a Bearer token.
//   - Generation is POST /v1/ideogram-v3/generate, multipart/form-data, with
//     the reference image as the file part character_reference_images.
//   - Inpainting (Request.Image and Request.Mask set) is POST
//     /v1/ideogram-v3/inpaint with image, mask and the same reference. Ideogram
//     repaints BLACK mask pixels, the opposite of likeness's neutral mask, so
//     the mask is inverted before it is sent.
//   - Params use Replicate's names and values (see the registry) and are
//     mapped here: rendering_speed Turbo -> TURBO, style_type Auto -> AUTO,
//     aspect_ratio "3:4" -> "3x4", magic_prompt_option On -> magic_prompt ON,
//     resolution "None" -> not sent. num_images is always 1.
//
// Failures are classified by status and body: 400/404/413 INPUT; 401/403
// BILLING (key or access); 402 BILLING with the body's reject_reason as Code;
// 422 (safety check) SAFETY; 429 RATE with Retry-After or
// Config.RateLimitWait; 5xx and transport failures TRANSIENT; 200 with
// is_image_safe false SAFETY. That last case is billed by Ideogram although
// no image comes back; a *provider.Error has no cost field, so the worker's
// cost accounting does not see that charge.
package ideogram

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// ProviderName is the provider part of this adapter's model references
// ("ideogram:ideogram-3-character") and the Provider of its errors.
const ProviderName = "ideogram"

// Defaults applied by New.
const (
	// DefaultBaseURL is Ideogram's API.
	DefaultBaseURL = "https://api.ideogram.ai"
	// DefaultTimeout bounds each HTTP request of the default client (the
	// generation, then the download). Ideogram holds a generation request
	// open for the whole generation (5-15 s per image; budget one to two
	// minutes under load).
	DefaultTimeout = 3 * time.Minute
	// DefaultRateLimitWait is the wait reported for a 429 that carries no
	// Retry-After header. Ideogram's 429 means "too many images in flight";
	// a slot frees when some running generation finishes, which takes about
	// one generation time (5-15 s).
	DefaultRateLimitWait = 10 * time.Second
)

// Paths of the endpoints used, relative to Config.BaseURL.
const (
	generatePath = "/v1/ideogram-v3/generate"
	// inpaintPath is the current name of the masked-edit endpoint;
	// /v1/ideogram-v3/edit is its legacy alias.
	inpaintPath = "/v1/ideogram-v3/inpaint"
)

// maxResponseBytes caps the JSON response read from Ideogram.
const maxResponseBytes = 1 << 20

// Config configures a Client. Only APIKey is required.
type Config struct {
	// BaseURL is Ideogram's API root. Default DefaultBaseURL; the CLI
	// overrides it from LIKENESS_IDEOGRAM_BASE_URL (tests, proxies).
	BaseURL string
	// APIKey is the Ideogram API key (the CLI reads IDEOGRAM_API_KEY). It is
	// sent only in the Api-Key header and never appears in errors or logs.
	// Surrounding whitespace is trimmed. Required.
	APIKey string
	// HTTPClient makes the requests and downloads the outputs. Default: a
	// client with DefaultTimeout. It must not retry on its own.
	HTTPClient *http.Client
	// RateLimitWait is the wait reported for a 429 without a Retry-After
	// header. Default DefaultRateLimitWait.
	RateLimitWait time.Duration
	// Registry resolves model names and prices. Default
	// provider.DefaultRegistry().
	Registry *provider.Registry
}

// Client generates images with Ideogram's API. It is safe for concurrent
// use.
type Client struct {
	cfg Config
}

// New returns a Client for cfg, with defaults applied to a copy.
func New(cfg Config) (*Client, error) {
	cfg.APIKey = strings.TrimSpace(cfg.APIKey) // keys pasted from files often end in a newline
	if cfg.APIKey == "" {
		return nil, errors.New("ideogram: APIKey is required (set IDEOGRAM_API_KEY)")
	}
	base, err := provider.BaseURL("ideogram", cfg.BaseURL, DefaultBaseURL)
	if err != nil {
		return nil, err
	}
	cfg.BaseURL = base
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.RateLimitWait < 0 {
		return nil, fmt.Errorf("ideogram: RateLimitWait must not be negative, got %s", cfg.RateLimitWait)
	}
	if cfg.RateLimitWait == 0 {
		cfg.RateLimitWait = DefaultRateLimitWait
	}
	if cfg.Registry == nil {
		cfg.Registry = provider.DefaultRegistry()
	}
	return &Client{cfg: cfg}, nil
}

// response is the body of a successful generate or inpaint request.
type response struct {
	// Created is a timestamp; its JSON type is not relied on.
	Created json.RawMessage `json:"created"`
	Data    []struct {
		URL         string `json:"url"`
		Prompt      string `json:"prompt"`
		Resolution  string `json:"resolution"`
		IsImageSafe *bool  `json:"is_image_safe"`
		Seed        int64  `json:"seed"`
		StyleType   string `json:"style_type"`
	} `json:"data"`
}

// Generate makes one Ideogram request for req and downloads the output.
// req.Model is the model name without the "ideogram:" prefix.
func (c *Client) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	model, err := c.cfg.Registry.Resolve(ProviderName+":"+req.Model, req.Params)
	if err != nil {
		return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Message: err.Error()}
	}
	f, err := buildForm(req)
	if err != nil {
		return nil, err
	}

	began := time.Now()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.BaseURL+f.path, bytes.NewReader(f.body))
	if err != nil {
		return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Message: "build request", Err: err}
	}
	hreq.Header.Set("Api-Key", c.cfg.APIKey)
	hreq.Header.Set("Content-Type", f.contentType)
	hreq.Header.Set("Accept", "application/json")
	resp, err := c.cfg.HTTPClient.Do(hreq)
	if err != nil {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Message: "request failed", Err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	requestID := resp.Header.Get("X-Request-Id")
	if err != nil {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode,
			RequestID: requestID, Message: "read response", Err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, c.statusError(resp, raw, requestID)
	}

	var out response
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode,
			RequestID: requestID, Message: "malformed response: " + c.snippet(raw), Err: err}
	}
	if len(out.Data) == 0 {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode,
			RequestID: requestID, Message: "response has no images: " + c.snippet(raw)}
	}
	d := out.Data[0]
	if requestID == "" {
		requestID = imageID(d.URL)
	}
	if requestID == "" {
		requestID = fmt.Sprintf("%s/%d", strings.Trim(string(out.Created), `"`), d.Seed)
	}
	if d.IsImageSafe != nil && !*d.IsImageSafe {
		// Billed although withheld; see the package doc on cost accounting.
		return nil, &provider.Error{Class: provider.Safety, Provider: ProviderName, Status: resp.StatusCode,
			Code: "is_image_safe_false", RequestID: requestID,
			Message: fmt.Sprintf("the output was withheld by Ideogram's safety check (billed at $%.2f)", model.Pricing.For(req.Params))}
	}
	if d.URL == "" {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode,
			RequestID: requestID, Message: "response image has no url: " + c.snippet(raw)}
	}

	img, err := provider.Fetch(ctx, c.cfg.HTTPClient, ProviderName, d.URL)
	if err != nil {
		var pe *provider.Error
		if errors.As(err, &pe) && pe.RequestID == "" {
			pe.RequestID = requestID
		}
		return nil, err
	}
	res := &provider.Result{
		Image:     img,
		RequestID: requestID,
		CostUSD:   model.Pricing.For(req.Params),
		Latency:   time.Since(began),
		Seed:      d.Seed,
	}
	if d.Prompt != "" && d.Prompt != req.Prompt {
		res.RevisedPrompt = d.Prompt
	}
	return res, nil
}

// imageID is the file name of an Ideogram output link without its
// extension (".../ephemeral/<id>.png?exp=...&signature=..."), the only
// per-request identifier a v1 response carries.
func imageID(link string) string {
	u, err := url.Parse(link)
	if err != nil || u.Path == "" {
		return ""
	}
	base := path.Base(u.Path)
	if base == "/" || base == "." {
		return ""
	}
	return strings.TrimSuffix(base, path.Ext(base))
}
