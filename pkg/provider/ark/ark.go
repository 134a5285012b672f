// Package ark is the adapter for ByteDance's SeedEdit 3.0 on BytePlus
// ModelArk (provider "ark"; the same API is Volcengine Ark in China),
// serving ark:seededit-3-0-i2i-250628: an instruction-guided edit of the
// character reference image.
//
// In the task lifecycle the worker calls Generate once per attempt and the
// queue owns retries, so Generate makes exactly one HTTP request and never
// retries or sleeps. The API is synchronous (no task id, nothing to poll or
// cancel): the request stays open until the image exists, about 13 s.
//
// Wire protocol (shared/providers.md section 6): POST {BaseURL}/images/generations
// with "Authorization: Bearer <ARK_API_KEY>" and an OpenAI-shaped JSON body:
//
//	{"model": "seededit-3-0-i2i-250628", "prompt": "...",
//	 "image": "data:image/png;base64,...", "response_format": "b64_json",
//	 "size": "adaptive", "seed": 1234, "guidance_scale": 5.5, "watermark": false}
//
// The reference goes inline as a data URI whose format is lowercase jpeg or
// png, the only formats SeedEdit takes; other formats (WebP, GIF) are
// converted to PNG first. A large reference that also has a URL is passed by
// URL instead. watermark is always sent as false because BytePlus documents
// true as the default. Outputs are requested as base64 (Config.ResponseFormat)
// so no download link can expire; "url" outputs are downloaded at once.
//
// Failures are classified by HTTP status and the body's error.code: safety
// codes (anything containing "RiskDetection" or "Sensitive") are SAFETY;
// 401/403 and model-not-activated codes are BILLING; 429 is RATE (with
// Retry-After, or Config.RateLimitWait) except quota-exhausted codes, which
// are BILLING; other 4xx are INPUT; 5xx and transport failures are
// TRANSIENT. The request id comes from the x-request-id header or from the
// "Request ID: ..." text of the error message.
package ark

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// ProviderName is the provider part of this adapter's model references
// ("ark:seededit-3-0-i2i-250628") and the Provider of its errors.
const ProviderName = "ark"

// Base URLs. Keys are region-bound: use the key of the region you call.
const (
	// DefaultBaseURL is BytePlus ModelArk (international, Southeast Asia).
	DefaultBaseURL = "https://ark.ap-southeast.bytepluses.com/api/v3"
	// VolcengineBaseURL is Volcengine Ark (China). There the model id is
	// "doubao-seededit-3-0-i2i-250628"; set Config.ModelIDs accordingly.
	VolcengineBaseURL = "https://ark.cn-beijing.volces.com/api/v3"
)

// Output formats for Config.ResponseFormat.
const (
	// ResponseBase64 returns the image inline: nothing to download, nothing
	// to expire. The default.
	ResponseBase64 = "b64_json"
	// ResponseURL returns a temporary object-storage link (~24 h), which
	// Generate downloads at once.
	ResponseURL = "url"
)

// Defaults applied by New.
const (
	// DefaultTimeout bounds each HTTP request of the default client. The
	// generation request stays open for the whole generation; BytePlus
	// advises at least 60 s.
	DefaultTimeout = 2 * time.Minute
	// DefaultRateLimitWait is the wait reported for a 429 without a
	// Retry-After header. Ark's image quotas are per minute, so a third of
	// the window is a conservative first wait.
	DefaultRateLimitWait = 20 * time.Second
	// DefaultInlineLimit is the reference size above which a reference that
	// also has a URL is passed by URL rather than inlined.
	DefaultInlineLimit = 4 << 20
	// DefaultGuidanceScale is SeedEdit's documented default, sent when the
	// spec does not set guidance_scale.
	DefaultGuidanceScale = 5.5
)

const (
	generationsPath  = "/images/generations"
	maxResponseBytes = 64 << 20 // base64 images arrive inline
)

// Config configures a Client. Only APIKey is required.
type Config struct {
	// BaseURL is the Ark API root including /api/v3. Default
	// DefaultBaseURL; the CLI overrides it from LIKENESS_ARK_BASE_URL
	// (tests, proxies, VolcengineBaseURL or another region).
	BaseURL string
	// APIKey is the Ark API key (the CLI reads ARK_API_KEY). It is sent only
	// as a Bearer token and never appears in errors or logs. Surrounding
	// whitespace is trimmed. Required.
	APIKey string
	// HTTPClient makes the requests and downloads URL outputs. Default: a
	// client with DefaultTimeout. It must not retry on its own.
	HTTPClient *http.Client
	// ResponseFormat is ResponseBase64 (default) or ResponseURL.
	ResponseFormat string
	// ModelIDs maps a registry model name to the model id or endpoint id
	// ("ep-...") sent on the wire. Names not in the map are sent as they
	// are. Default empty; for Volcengine use
	// {"seededit-3-0-i2i-250628": "doubao-seededit-3-0-i2i-250628"}.
	ModelIDs map[string]string
	// RateLimitWait is the wait reported for a 429 without a Retry-After
	// header. Default DefaultRateLimitWait.
	RateLimitWait time.Duration
	// InlineLimit is the reference size in bytes above which a reference
	// with a URL is sent by URL. Default DefaultInlineLimit.
	InlineLimit int
	// Registry resolves model names and prices. Default
	// provider.DefaultRegistry().
	Registry *provider.Registry
}

// Client edits images with SeedEdit on Ark. It is safe for concurrent use.
type Client struct {
	cfg Config
}

// New returns a Client for cfg, with defaults applied to a copy.
func New(cfg Config) (*Client, error) {
	cfg.APIKey = strings.TrimSpace(cfg.APIKey) // keys pasted from files often end in a newline
	if cfg.APIKey == "" {
		return nil, errors.New("ark: APIKey is required (set ARK_API_KEY)")
	}
	base, err := provider.BaseURL("ark", cfg.BaseURL, DefaultBaseURL)
	if err != nil {
		return nil, err
	}
	cfg.BaseURL = base
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	switch cfg.ResponseFormat {
	case "":
		cfg.ResponseFormat = ResponseBase64
	case ResponseBase64, ResponseURL:
	default:
		return nil, fmt.Errorf("ark: ResponseFormat %q must be %q or %q", cfg.ResponseFormat, ResponseBase64, ResponseURL)
	}
	cfg.ModelIDs = maps.Clone(cfg.ModelIDs)
	if cfg.RateLimitWait < 0 || cfg.InlineLimit < 0 {
		return nil, errors.New("ark: RateLimitWait and InlineLimit must not be negative")
	}
	if cfg.RateLimitWait == 0 {
		cfg.RateLimitWait = DefaultRateLimitWait
	}
	if cfg.InlineLimit == 0 {
		cfg.InlineLimit = DefaultInlineLimit
	}
	if cfg.Registry == nil {
		cfg.Registry = provider.DefaultRegistry()
	}
	return &Client{cfg: cfg}, nil
}

// generation is the JSON body of POST /images/generations.
type generation struct {
	Model          string  `json:"model"`
	Prompt         string  `json:"prompt"`
	Image          string  `json:"image"`
	ResponseFormat string  `json:"response_format"`
	Size           string  `json:"size"`
	Seed           int64   `json:"seed"`
	GuidanceScale  float64 `json:"guidance_scale"`
	// Watermark is always sent, as false.
	Watermark bool `json:"watermark"`
}

// response is the body of a successful generation.
type response struct {
	Model   string `json:"model"`
	Created int64  `json:"created"`
	Data    []struct {
		URL     string    `json:"url"`
		B64JSON string    `json:"b64_json"`
		Size    string    `json:"size"`
		Error   *apiError `json:"error"`
	} `json:"data"`
	Error *apiError `json:"error"`
}

// Generate makes one SeedEdit request for req and returns the edited image.
// req.Model is the model name without the "ark:" prefix.
func (c *Client) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	model, err := c.cfg.Registry.Resolve(ProviderName+":"+req.Model, req.Params)
	if err != nil {
		return nil, inputError(err.Error())
	}
	if req.Image != nil || req.Mask != nil {
		return nil, inputError("SeedEdit has no masked inpainting; it edits the reference from the prompt alone")
	}
	if strings.TrimSpace(req.Prompt) == "" {
		return nil, inputError("the prompt is empty")
	}
	img, err := imageField(req.Reference, c.cfg.InlineLimit)
	if err != nil {
		return nil, err
	}
	body := generation{
		Model:          req.Model,
		Prompt:         req.Prompt,
		Image:          img,
		ResponseFormat: c.cfg.ResponseFormat,
		Size:           "adaptive",
		Seed:           req.Seed,
		GuidanceScale:  DefaultGuidanceScale,
	}
	if id, ok := c.cfg.ModelIDs[req.Model]; ok {
		body.Model = id
	}
	if v, ok := req.Params["guidance_scale"]; ok {
		if f, ok := number(v); ok {
			body.GuidanceScale = f
		}
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, inputError("encode request: " + err.Error())
	}

	began := time.Now()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.BaseURL+generationsPath, bytes.NewReader(payload))
	if err != nil {
		return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Message: "build request", Err: err}
	}
	hreq.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	hreq.Header.Set("Content-Type", "application/json")
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
			RequestID: requestID, Message: "malformed response: " + c.clean(string(raw)), Err: err}
	}
	if out.Error != nil && out.Error.Code != "" {
		return nil, c.apiErr(resp, *out.Error, requestID)
	}
	if len(out.Data) == 0 {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode,
			RequestID: requestID, Message: "response has no images: " + c.clean(string(raw))}
	}
	d := out.Data[0]
	if d.Error != nil && d.Error.Code != "" {
		return nil, c.apiErr(resp, *d.Error, requestID)
	}
	if requestID == "" {
		requestID = fmt.Sprintf("%s-%d", out.Model, out.Created)
	}

	var image provider.Image
	switch {
	case d.B64JSON != "":
		data, err := base64.StdEncoding.DecodeString(d.B64JSON)
		if err != nil {
			return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode,
				RequestID: requestID, Message: "output is not valid base64", Err: err}
		}
		image = provider.Image{Data: data, ContentType: http.DetectContentType(data)}
	case d.URL != "":
		image, err = provider.Fetch(ctx, c.cfg.HTTPClient, ProviderName, d.URL)
		if err != nil {
			var pe *provider.Error
			if errors.As(err, &pe) && pe.RequestID == "" {
				pe.RequestID = requestID
			}
			return nil, err
		}
	default:
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode,
			RequestID: requestID, Message: "response image has neither url nor b64_json"}
	}
	return &provider.Result{
		Image:     image,
		RequestID: requestID,
		CostUSD:   model.Pricing.For(req.Params),
		Latency:   time.Since(began),
	}, nil
}

// number returns a numeric param as float64.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	}
	return 0, false
}

func inputError(msg string) *provider.Error {
	return &provider.Error{Class: provider.Input, Provider: ProviderName, Message: msg}
}
