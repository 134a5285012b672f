// Package openai is the adapter for OpenAI's Images API (gpt-image-1), the
// "openai:<model>" models of the registry.
//
// In the task lifecycle the worker calls Client.Generate once per attempt;
// the queue owns retries, so Generate makes exactly one HTTP request and
// never retries or sleeps. The Images API is synchronous: the request stays
// open for the whole generation (tens of seconds, up to about two minutes
// for high-quality edits) and the answer carries the image inline as base64,
// so there is nothing to poll and no output URL that could expire.
//
// # Wire format
//
// A request with a character reference (every likeness request) is an edit:
// POST {BaseURL}/images/edits as multipart/form-data with model, prompt, the
// reference as an image[] file part whose Content-Type is the image type
// sniffed from its bytes (OpenAI rejects application/octet-stream), and n=1.
// input_fidelity defaults to "high", which keeps faces closest to the
// reference (OpenAI's own default is "low"). An inpainting request
// (Request.Image and Request.Mask) sends Request.Image first, then the
// reference, and a mask PNG converted from likeness's convention (non-black
// = repaint) to OpenAI's (alpha 0 = repaint, opaque = keep) at the size of
// Request.Image. Without any input image the request is a text-to-image
// generation, POST {BaseURL}/images/generations with a JSON body.
//
// Params (validated against the registry) map as follows: aspect_ratio
// 1:1, 3:2, 2:3 becomes size 1024x1024, 1536x1024, 1024x1536; size is sent
// as given; quality, background, output_format and output_compression are
// sent as given; moderation is sent on generations only, since the edits
// endpoint does not accept it. GIF references are re-encoded as PNG. OpenAI
// has no seed, so Request.Seed is not sent; a retry still draws a new image.
//
// # Failures
//
// Every failure is a *provider.Error with Provider "openai", classified by
// status and by the body's error.code and error.type (a 429 is either a rate
// limit or an empty account): see Classify.
package openai

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

// ProviderName is the provider part of model references ("openai:gpt-image-1")
// and the Provider of every error the adapter returns.
const ProviderName = "openai"

// DefaultBaseURL is OpenAI's API root.
const DefaultBaseURL = "https://api.openai.com/v1"

// DefaultTimeout bounds one request of the default HTTP client. Generation
// happens while the request is open; high-quality edits can approach two
// minutes, so five minutes leaves room for a slow upload and a busy service.
const DefaultTimeout = 5 * time.Minute

// DefaultInputFidelity is the input_fidelity sent when the params leave it
// unset: "high" keeps the character's face closest to the reference.
const DefaultInputFidelity = "high"

// maxResponseBytes caps a response body: a base64 1536x1024 PNG is a few MiB.
const maxResponseBytes = 96 << 20

// Config configures a Client. Defaults are applied to a copy in New.
type Config struct {
	// BaseURL is the API root the endpoint paths are appended to.
	// Default: DefaultBaseURL. The CLI overrides it from
	// LIKENESS_OPENAI_BASE_URL (tests, proxies, gateways).
	BaseURL string
	// APIKey is the secret key sent as "Authorization: Bearer <key>"
	// (OPENAI_API_KEY). Required. It never appears in errors or URLs.
	APIKey string
	// Organization, when set, is sent as the OpenAI-Organization header.
	Organization string
	// Project, when set, is sent as the OpenAI-Project header.
	Project string
	// HTTPClient sends the requests. Default: a client with DefaultTimeout.
	// Tests and telemetry inject their own; its timeout should allow several
	// minutes, since the generation happens inside one request.
	HTTPClient *http.Client
	// Registry resolves model params and list prices.
	// Default: provider.DefaultRegistry().
	Registry *provider.Registry
	// Now is the clock used to read HTTP-date Retry-After headers.
	// Default: time.Now.
	Now func() time.Time
}

// Client generates images with OpenAI's Images API. It is safe for
// concurrent use.
type Client struct {
	cfg Config
}

// New returns a Client for cfg. It fails when the API key is missing or the
// base URL is not an http(s) URL.
func New(cfg Config) (*Client, error) {
	if strings.TrimSpace(cfg.APIKey) == "" {
		return nil, errors.New("openai: APIKey is required (set OPENAI_API_KEY)")
	}
	base, err := provider.BaseURL("openai", cfg.BaseURL, DefaultBaseURL)
	if err != nil {
		return nil, err
	}
	cfg.BaseURL = base
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.Registry == nil {
		cfg.Registry = provider.DefaultRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Client{cfg: cfg}, nil
}

// imagesResponse is the body of a successful images call.
type imagesResponse struct {
	Created int64 `json:"created"`
	Data    []struct {
		B64JSON       string `json:"b64_json"`
		URL           string `json:"url"`
		RevisedPrompt string `json:"revised_prompt"`
	} `json:"data"`
}

// Generate makes one images request for req and returns the decoded output.
// req.Model is the model name without the provider prefix ("gpt-image-1").
// It returns a *provider.Error for every failure; when ctx ends first the
// error is Transient and wraps ctx's error.
func (c *Client) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	ref := ProviderName + ":" + req.Model
	model, err := c.cfg.Registry.Resolve(ref, req.Params)
	if err != nil {
		return nil, c.inputError("invalid_request", err.Error())
	}
	if err := c.materialize(ctx, &req); err != nil {
		return nil, err
	}
	wire, err := buildWire(req)
	if err != nil {
		return nil, c.inputError("invalid_request", err.Error())
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.BaseURL+wire.path, bytes.NewReader(wire.body))
	if err != nil {
		return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Message: "build request", Err: err}
	}
	hreq.Header.Set("Content-Type", wire.contentType)
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	if c.cfg.Organization != "" {
		hreq.Header.Set("OpenAI-Organization", c.cfg.Organization)
	}
	if c.cfg.Project != "" {
		hreq.Header.Set("OpenAI-Project", c.cfg.Project)
	}

	began := time.Now()
	resp, err := c.cfg.HTTPClient.Do(hreq)
	if err != nil {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Message: "request " + wire.path + " failed", Err: c.redactErr(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	requestID := resp.Header.Get("x-request-id")
	if err != nil {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode, RequestID: requestID, Message: "read response", Err: c.redactErr(err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := Classify(resp.StatusCode, resp.Header, body, c.cfg.Now())
		e.Message = c.redact(e.Message)
		return nil, e
	}
	if len(body) > maxResponseBytes {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode, RequestID: requestID, Message: fmt.Sprintf("response larger than %d MiB", maxResponseBytes>>20)}
	}
	var out imagesResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode, RequestID: requestID, Message: "malformed response: " + c.redact(snippet(body)), Err: err}
	}
	if len(out.Data) == 0 || (out.Data[0].B64JSON == "" && out.Data[0].URL == "") {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode, RequestID: requestID, Message: "response holds no image"}
	}
	var img provider.Image
	if b64 := out.Data[0].B64JSON; b64 != "" {
		data, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode, RequestID: requestID, Message: "output is not valid base64", Err: err}
		}
		img = provider.Image{Data: data, ContentType: http.DetectContentType(data)}
	} else {
		// Only DALL-E models answer with URLs; fetch at once if one appears.
		img, err = provider.Fetch(ctx, c.cfg.HTTPClient, ProviderName, out.Data[0].URL)
		if err != nil {
			var pe *provider.Error
			if errors.As(err, &pe) {
				pe.RequestID = requestID
			}
			return nil, err
		}
	}
	return &provider.Result{
		Image:         img,
		RequestID:     requestID,
		CostUSD:       model.Pricing.For(req.Params),
		Latency:       time.Since(began),
		RevisedPrompt: c.redact(out.Data[0].RevisedPrompt),
	}, nil
}

// materialize downloads input images that came as a URL only: the edits
// endpoint takes file parts, not URLs. The caller's Request is not changed.
func (c *Client) materialize(ctx context.Context, req *provider.Request) error {
	fetch := func(img provider.Image, what string) (provider.Image, error) {
		if len(img.Data) > 0 || img.URL == "" {
			return img, nil
		}
		got, err := provider.Fetch(ctx, c.cfg.HTTPClient, ProviderName, img.URL)
		if err != nil {
			var pe *provider.Error
			if errors.As(err, &pe) {
				pe.Message = "fetch " + what + ": " + pe.Message
			}
			return img, err
		}
		got.URL = img.URL
		return got, nil
	}
	var err error
	if req.Reference, err = fetch(req.Reference, "reference"); err != nil {
		return err
	}
	for _, p := range []struct {
		img  **provider.Image
		what string
	}{{&req.Image, "inpainting image"}, {&req.Mask, "mask"}} {
		if *p.img == nil {
			continue
		}
		got, err := fetch(**p.img, p.what)
		if err != nil {
			return err
		}
		*p.img = &got
	}
	return nil
}

func (c *Client) inputError(code, msg string) *provider.Error {
	return &provider.Error{Class: provider.Input, Provider: ProviderName, Code: code, Message: c.redact(msg)}
}

// redact removes the API key from text that came from elsewhere (a proxy
// echoing headers, a gateway's error page).
func (c *Client) redact(s string) string {
	if c.cfg.APIKey == "" || !strings.Contains(s, c.cfg.APIKey) {
		return s
	}
	return strings.ReplaceAll(s, c.cfg.APIKey, "[redacted]")
}

func (c *Client) redactErr(err error) error {
	if err == nil || !strings.Contains(err.Error(), c.cfg.APIKey) {
		return err
	}
	return redactedError{msg: c.redact(err.Error()), err: err}
}

// redactedError keeps errors.Is/As working on an error whose text held the key.
type redactedError struct {
	msg string
	err error
}

func (e redactedError) Error() string { return e.msg }
func (e redactedError) Unwrap() error { return e.err }
