package openai

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
)

func newClient(t *testing.T, baseURL string) *Client {
	t.Helper()
	c, err := New(Config{BaseURL: baseURL, APIKey: providertest.OpenAIKey, Organization: "org-fake", Project: "proj_fake"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, providertest.Harness{
		NewFake:      func(t *testing.T) providertest.Fake { return providertest.NewOpenAI(t) },
		NewGenerator: func(t *testing.T, baseURL string) provider.Generator { return newClient(t, baseURL) },
		Model:        "gpt-image-1",
		Params:       map[string]any{"quality": "low", "aspect_ratio": "2:3"},
		Key:          providertest.OpenAIKey,
		Provider:     ProviderName,
	})
}

func TestNew(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Error("New without an API key succeeded")
	}
	if _, err := New(Config{APIKey: "sk-x", BaseURL: "api.openai.com"}); err == nil {
		t.Error("New with a base URL without scheme succeeded")
	}
	c, err := New(Config{APIKey: "sk-x"})
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.BaseURL != DefaultBaseURL || c.cfg.HTTPClient.Timeout < 3*time.Minute {
		t.Errorf("defaults: base %q, timeout %s", c.cfg.BaseURL, c.cfg.HTTPClient.Timeout)
	}
}

// part is one multipart part as the fake received it.
type part struct {
	Name, Filename, ContentType string
	Data                        []byte
}

// parts decodes a recorded multipart request.
func parts(t *testing.T, r providertest.Request) []part {
	t.Helper()
	_, mp, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(bytes.NewReader(r.Body), mp["boundary"])
	var out []part
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(p)
		out = append(out, part{p.FormName(), p.FileName(), p.Header.Get("Content-Type"), data})
	}
}

func fields(ps []part) map[string]string {
	m := map[string]string{}
	for _, p := range ps {
		if p.Filename == "" {
			m[p.Name] = string(p.Data)
		}
	}
	return m
}

func encode(t *testing.T, img image.Image, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case "jpeg":
		err = jpeg.Encode(&buf, img, nil)
	case "gif":
		err = gif.Encode(&buf, img, nil)
	default:
		err = png.Encode(&buf, img)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func decodedRef(t *testing.T) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(providertest.Reference()))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestEditRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, format, wantType string
	}{
		{"png", "png", "image/png"},
		{"jpeg", "jpeg", "image/jpeg"},
		{"gif re-encoded", "gif", "image/png"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewOpenAI(t)
			c := newClient(t, fake.URL())
			ref := encode(t, decodedRef(t), tc.format)
			res, err := c.Generate(context.Background(), provider.Request{
				Model: "gpt-image-1", Prompt: "she is playing the piano", Character: "mara",
				Reference: provider.Image{Data: ref, ContentType: "application/octet-stream"},
				Seed:      7, Params: map[string]any{"quality": "medium", "aspect_ratio": "3:2", "output_format": "jpeg", "output_compression": 80},
			})
			if err != nil {
				t.Fatal(err)
			}
			reqs := fake.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests; want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/v1/images/edits" {
				t.Errorf("request %s %s; want POST /v1/images/edits", r.Method, r.Path)
			}
			for h, want := range map[string]string{
				"Authorization":       "Bearer " + providertest.OpenAIKey,
				"OpenAI-Organization": "org-fake",
				"OpenAI-Project":      "proj_fake",
			} {
				if got := r.Header.Get(h); got != want {
					t.Errorf("header %s = %q; want %q", h, got, want)
				}
			}
			ps := parts(t, r)
			var images []part
			for _, p := range ps {
				if p.Name == "image[]" {
					images = append(images, p)
				}
			}
			if len(images) != 1 {
				t.Fatalf("%d image[] parts; want 1", len(images))
			}
			if images[0].ContentType != tc.wantType || !strings.HasPrefix(images[0].Filename, "reference.") {
				t.Errorf("image[] part %q with type %q; want reference.* with %s", images[0].Filename, images[0].ContentType, tc.wantType)
			}
			if _, _, err := providertest.DecodeSize(images[0].Data); err != nil {
				t.Errorf("image[] bytes: %v", err)
			}
			want := map[string]string{
				"model": "gpt-image-1", "prompt": "she is playing the piano", "n": "1",
				"size": "1536x1024", "quality": "medium", "input_fidelity": "high",
				"output_format": "jpeg", "output_compression": "80",
			}
			if diff := cmp.Diff(want, fields(ps)); diff != "" {
				t.Errorf("form fields (-want +got):\n%s", diff)
			}
			if res.Image.ContentType != "image/jpeg" {
				t.Errorf("output type %q; want image/jpeg sniffed", res.Image.ContentType)
			}
			if w, h, _ := providertest.DecodeSize(res.Image.Data); w != 1536 || h != 1024 {
				t.Errorf("output %dx%d; want 1536x1024", w, h)
			}
			if res.CostUSD != 0.042 {
				t.Errorf("cost %v; want the medium list price 0.042", res.CostUSD)
			}
			if !strings.HasPrefix(res.RequestID, "req_") {
				t.Errorf("request id %q; want the x-request-id header", res.RequestID)
			}
		})
	}
}

func TestSizeMapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		params   map[string]any
		wantSize string // "" = not sent
		wantErr  bool
	}{
		{"1:1", map[string]any{"aspect_ratio": "1:1"}, "1024x1024", false},
		{"3:2", map[string]any{"aspect_ratio": "3:2"}, "1536x1024", false},
		{"2:3", map[string]any{"aspect_ratio": "2:3"}, "1024x1536", false},
		{"size auto", map[string]any{"size": "auto"}, "auto", false},
		{"size direct", map[string]any{"size": "1024x1536"}, "1024x1536", false},
		{"both agreeing", map[string]any{"aspect_ratio": "3:2", "size": "1536x1024"}, "1536x1024", false},
		{"unset", map[string]any{}, "", false},
		{"conflict", map[string]any{"aspect_ratio": "1:1", "size": "1536x1024"}, "", true},
		{"conflict with auto", map[string]any{"aspect_ratio": "2:3", "size": "auto"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewOpenAI(t)
			c := newClient(t, fake.URL())
			ref := providertest.Reference()
			_, err := c.Generate(context.Background(), provider.Request{
				Model: "gpt-image-1", Prompt: "p", Reference: provider.Image{Data: ref}, Params: tc.params,
			})
			if tc.wantErr {
				if provider.ClassOf(err) != provider.Input || fake.Calls() != 0 {
					t.Fatalf("err %v after %d calls; want an Input error before any request", err, fake.Calls())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, sent := fields(parts(t, fake.Requests()[0]))["size"]
			if tc.wantSize == "" && sent || tc.wantSize != "" && got != tc.wantSize {
				t.Errorf("size %q (sent %v); want %q", got, sent, tc.wantSize)
			}
		})
	}
	for ratio, want := range map[string]string{"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"} {
		if got, ok := SizeFor(ratio); !ok || got != want {
			t.Errorf("SizeFor(%q) = %q, %v; want %q", ratio, got, ok, want)
		}
	}
	if _, ok := SizeFor("16:9"); ok {
		t.Error("SizeFor(16:9) succeeded; gpt-image-1 has no 16:9 size")
	}
}

func TestLocalParamChecks(t *testing.T) {
	t.Parallel()
	for name, params := range map[string]map[string]any{
		"compression with png":     {"output_compression": 50},
		"compression unset format": {"output_compression": 50, "output_format": "png"},
		"transparent jpeg":         {"background": "transparent", "output_format": "jpeg"},
		"unknown param":            {"style": "vivid"},
		"bad enum":                 {"quality": "ultra"},
	} {
		fake := providertest.NewOpenAI(t)
		_, err := newClient(t, fake.URL()).Generate(context.Background(), provider.Request{
			Model: "gpt-image-1", Prompt: "p", Reference: provider.Image{Data: providertest.Reference()}, Params: params,
		})
		if provider.ClassOf(err) != provider.Input || fake.Calls() != 0 {
			t.Errorf("%s: err %v after %d calls; want Input before any request", name, err, fake.Calls())
		}
	}
}

// square returns a w×h neutral mask: black, with a white square covering
// [x0,x1)×[y0,y1).
func square(w, h, x0, y0, x1, y1 int) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			m.SetGray(x, y, color.Gray{Y: 255})
		}
	}
	return m
}

func TestConvertMask(t *testing.T) {
	t.Parallel()
	neutral := encode(t, square(40, 30, 10, 5, 20, 15), "png")
	out, err := ConvertMask(neutral, 40, 30)
	if err != nil {
		t.Fatal(err)
	}
	m, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if b := m.Bounds(); b.Dx() != 40 || b.Dy() != 30 {
		t.Fatalf("mask %v; want 40x30", b)
	}
	for y := range 30 {
		for x := range 40 {
			_, _, _, a := m.At(x, y).RGBA()
			inside := x >= 10 && x < 20 && y >= 5 && y < 15
			if inside && a != 0 || !inside && a != 0xffff {
				t.Fatalf("alpha at (%d,%d) = %d; want %s", x, y, a>>8, map[bool]string{true: "0 (repaint)", false: "255 (keep)"}[inside])
			}
		}
	}

	// A mask of another size is scaled to the image; grey counts as repaint.
	small := image.NewGray(image.Rect(0, 0, 2, 1))
	small.SetGray(1, 0, color.Gray{Y: 128})
	out, err = ConvertMask(encode(t, small, "png"), 8, 4)
	if err != nil {
		t.Fatal(err)
	}
	m, _ = png.Decode(bytes.NewReader(out))
	if _, _, _, a := m.At(1, 1).RGBA(); a != 0xffff {
		t.Errorf("left half alpha %d; want opaque", a)
	}
	if _, _, _, a := m.At(6, 3).RGBA(); a != 0 {
		t.Errorf("right half alpha %d; want transparent", a)
	}

	if _, err := ConvertMask(encode(t, image.NewGray(image.Rect(0, 0, 4, 4)), "png"), 4, 4); err == nil {
		t.Error("an all-black mask converted; want an error")
	}
	if _, err := ConvertMask([]byte("not an image"), 4, 4); err == nil {
		t.Error("garbage converted")
	}
}

func TestInpaintRequest(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAI(t)
	c := newClient(t, fake.URL())
	src := providertest.PNG(64, 48, 5)
	mask := encode(t, square(32, 24, 8, 4, 16, 12), "jpeg") // half size, JPEG: scaled and thresholded
	_, err := c.Generate(context.Background(), provider.Request{
		Model: "gpt-image-1", Prompt: "give her a red hat",
		Reference: provider.Image{Data: providertest.Reference()},
		Image:     &provider.Image{Data: src}, Mask: &provider.Image{Data: mask},
	})
	if err != nil {
		t.Fatal(err)
	}
	ps := parts(t, fake.Requests()[0])
	var order []string
	var maskPart part
	for _, p := range ps {
		if p.Filename != "" {
			order = append(order, p.Name+" "+p.Filename+" "+p.ContentType)
		}
		if p.Name == "mask" {
			maskPart = p
		}
	}
	want := []string{"image[] image.png image/png", "image[] reference.png image/png", "mask mask.png image/png"}
	if diff := cmp.Diff(want, order); diff != "" {
		t.Fatalf("file parts (-want +got):\n%s", diff)
	}
	m, err := png.Decode(bytes.NewReader(maskPart.Data))
	if err != nil {
		t.Fatal(err)
	}
	if b := m.Bounds(); b.Dx() != 64 || b.Dy() != 48 {
		t.Fatalf("mask %v; want the image's 64x48", b)
	}
	alpha := func(x, y int) uint32 { _, _, _, a := m.At(x, y).RGBA(); return a >> 8 }
	if alpha(24, 16) != 0 || alpha(2, 2) != 255 || alpha(60, 40) != 255 {
		t.Errorf("mask alpha inside %d, corners %d %d; want 0 inside the white square, 255 elsewhere", alpha(24, 16), alpha(2, 2), alpha(60, 40))
	}
}

func TestGenerationWithoutReference(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAI(t)
	c := newClient(t, fake.URL())
	res, err := c.Generate(context.Background(), provider.Request{
		Model: "gpt-image-1", Prompt: "a lighthouse", Params: map[string]any{"moderation": "low", "quality": "high", "aspect_ratio": "1:1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := fake.Requests()[0]
	if r.Path != "/v1/images/generations" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("request %s as %q; want JSON to /v1/images/generations", r.Path, r.Header.Get("Content-Type"))
	}
	want := `{"model":"gpt-image-1","prompt":"a lighthouse","n":1,"size":"1024x1024","quality":"high","moderation":"low"}`
	if got := string(r.Body); got != want {
		t.Errorf("body %s; want %s", got, want)
	}
	if res.CostUSD != 0.167 {
		t.Errorf("cost %v; want 0.167", res.CostUSD)
	}
}

func TestModerationNotSentOnEdits(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAI(t)
	_, err := newClient(t, fake.URL()).Generate(context.Background(), provider.Request{
		Model: "gpt-image-1", Prompt: "p", Reference: provider.Image{Data: providertest.Reference()},
		Params: map[string]any{"moderation": "low", "input_fidelity": "low"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := fields(parts(t, fake.Requests()[0]))
	if _, ok := f["moderation"]; ok {
		t.Error("moderation sent to images/edits, which does not accept it")
	}
	if f["input_fidelity"] != "low" {
		t.Errorf("input_fidelity %q; want the param's low", f["input_fidelity"])
	}
}

func TestWrongKey(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAI(t)
	c, _ := New(Config{BaseURL: fake.URL(), APIKey: "sk-proj-wrongwrongwrongwrong1234"})
	_, err := c.Generate(context.Background(), provider.Request{Model: "gpt-image-1", Prompt: "p", Reference: provider.Image{Data: providertest.Reference()}})
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.Billing || pe.Status != 401 || pe.Code != "invalid_api_key" {
		t.Fatalf("err %v; want Billing 401 invalid_api_key", err)
	}
	if strings.Contains(err.Error(), "sk-proj-wrongwrongwrongwrong1234") {
		t.Error("the error shows the key")
	}
}

// TestClassify feeds recorded OpenAI answers (bodies as published in
// shared/providers.md, OpenAI's error-code guide and user reports of real
// responses) through Classify.
func TestClassify(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)
	type hdr = map[string]string
	for _, tc := range []struct {
		name    string
		status  int
		headers hdr
		body    string
		class   provider.Class
		code    string
		wait    time.Duration
	}{
		{
			name: "429 insufficient_quota", status: 429,
			body:  `{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`,
			class: provider.Billing, code: "insufficient_quota",
		},
		{
			name: "429 insufficient_quota, older body with null code", status: 429,
			body:  `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":null}}`,
			class: provider.Billing, code: "insufficient_quota",
		},
		{
			name: "429 project spend limit", status: 429,
			body:  `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"project_spend_limit_exceeded"}}`,
			class: provider.Billing, code: "project_spend_limit_exceeded",
		},
		{
			name: "429 images per minute with Retry-After", status: 429,
			headers: hdr{"Retry-After": "7", "x-ratelimit-reset-requests": "12s"},
			body:    `{"error":{"message":"Rate limit reached for gpt-image-1 in organization org-abc on images per min (IPM): Limit 5, Used 5, Requested 1. Please try again in 12s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`,
			class:   provider.Rate, code: "rate_limit_exceeded", wait: 7 * time.Second,
		},
		{
			name: "429 retry-after-ms wins", status: 429,
			headers: hdr{"retry-after-ms": "1500", "Retry-After": "2"},
			body:    `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`,
			class:   provider.Rate, code: "rate_limit_exceeded", wait: 1500 * time.Millisecond,
		},
		{
			name: "429 tokens per minute: the tokens reset", status: 429,
			headers: hdr{"x-ratelimit-reset-requests": "120ms", "x-ratelimit-reset-tokens": "7.188s", "x-ratelimit-remaining-requests": "3"},
			body:    `{"error":{"message":"Rate limit reached for gpt-image-1 in organization org-abc on tokens per min (TPM): Limit 100000, Used 98000, Requested 4497. Please try again in 7.188s.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}`,
			class:   provider.Rate, code: "rate_limit_exceeded", wait: 7188 * time.Millisecond,
		},
		{
			name: "429 images per minute: the requests reset", status: 429,
			headers: hdr{"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "20ms"},
			body:    `{"error":{"message":"Rate limit reached for gpt-image-1 in organization org-abc on images per min (IPM): Limit 5, Used 5, Requested 1.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`,
			class:   provider.Rate, code: "rate_limit_exceeded", wait: 6 * time.Minute,
		},
		{
			name: "429 unnamed limit: the exhausted one", status: 429,
			headers: hdr{"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "20ms", "x-ratelimit-remaining-tokens": "0", "x-ratelimit-remaining-requests": "10"},
			body:    `{"error":{"message":"Rate limit reached.","type":"","param":null,"code":"rate_limit_exceeded"}}`,
			class:   provider.Rate, code: "rate_limit_exceeded", wait: 20 * time.Millisecond,
		},
		{
			name: "429 wait only in the message", status: 429,
			body:  `{"error":{"message":"Rate limit reached for gpt-image-1 on images per min (IPM). Please try again in 20ms.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`,
			class: provider.Rate, code: "rate_limit_exceeded", wait: 20 * time.Millisecond,
		},
		{
			name: "429 try again after N seconds", status: 429,
			body:  `{"error":{"message":"You've exceeded the rate limit, please slow down and try again after 51.84 seconds.","type":"requests","param":null,"code":"rate_limit_exceeded"}}`,
			class: provider.Rate, code: "rate_limit_exceeded", wait: 51840 * time.Millisecond,
		},
		{
			name: "429 slow_down", status: 429,
			body:  `{"error":{"message":"Please reduce your rate of requests.","type":"requests","param":null,"code":"slow_down"}}`,
			class: provider.Rate, code: "slow_down",
		},
		{
			name: "400 moderation_blocked", status: 400,
			body:  `{"error":{"message":"Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID b68e1d8f-31a3-4a04-aa41-bf442d857ccd. safety_violations=[sexual].","type":"image_generation_user_error","param":null,"code":"moderation_blocked","moderation_details":{"moderation_stage":"output","categories":["sexual"]}}}`,
			class: provider.Safety, code: "moderation_blocked",
		},
		{
			name: "400 moderation_blocked, older type", status: 400,
			body:  `{"error":{"message":"Your request was rejected as a result of our safety system. Your request may contain content that is not allowed by our safety system.","type":"invalid_request_error","param":null,"code":"moderation_blocked"}}`,
			class: provider.Safety, code: "moderation_blocked",
		},
		{
			name: "400 content_policy_violation (DALL-E era)", status: 400,
			body:  `{"error":{"code":"content_policy_violation","message":"Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.","param":null,"type":"invalid_request_error"}}`,
			class: provider.Safety, code: "content_policy_violation",
		},
		{
			name: "400 unsupported mimetype", status: 400,
			body:  `{"error":{"message":"Invalid file 'image': unsupported mimetype ('application/octet-stream'). Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.","type":"invalid_request_error","param":"image","code":"unsupported_file_mimetype"}}`,
			class: provider.Input, code: "unsupported_file_mimetype",
		},
		{
			name: "400 invalid value", status: 400,
			body:  `{"error":{"message":"Invalid value: 'ultra'. Supported values are: 'low', 'medium', 'high', and 'auto'.","type":"invalid_request_error","param":"quality","code":"invalid_value"}}`,
			class: provider.Input, code: "invalid_value",
		},
		{
			name: "400 billing hard limit", status: 400,
			body:  `{"error":{"message":"Billing hard limit has been reached","type":"invalid_request_error","param":null,"code":"billing_hard_limit_reached"}}`,
			class: provider.Billing, code: "billing_hard_limit_reached",
		},
		{
			name: "401 invalid key", status: 401,
			body:  `{"error":{"message":"Incorrect API key provided: sk-proj-********************abcd. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`,
			class: provider.Billing, code: "invalid_api_key",
		},
		{
			name: "403 organization not verified", status: 403,
			body:  `{"error":{"message":"Your organization must be verified to use the model ` + "`gpt-image-1`" + `. Please go to: https://platform.openai.com/settings/organization/general and click on Verify Organization. If you just verified, it can take up to 15 minutes for access to propagate.","type":"invalid_request_error","param":null,"code":null}}`,
			class: provider.Billing, code: "invalid_request_error",
		},
		{
			name: "403 region", status: 403,
			body:  `{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported","param":null,"type":"request_forbidden"}}`,
			class: provider.Billing, code: "unsupported_country_region_territory",
		},
		{
			name: "404 model_not_found", status: 404,
			body:  `{"error":{"message":"The model ` + "`gpt-image-1`" + ` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}`,
			class: provider.Input, code: "model_not_found",
		},
		{
			name: "500 server_error", status: 500,
			body:  `{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}`,
			class: provider.Transient, code: "server_error",
		},
		{
			name: "503 overloaded", status: 503,
			body:  `{"error":{"message":"The engine is currently overloaded, please try again later.","type":"server_error","param":null,"code":null}}`,
			class: provider.Transient, code: "server_error",
		},
		{
			name: "502 gateway HTML", status: 502,
			body:  "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n",
			class: provider.Transient,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{"X-Request-Id": {"req_123"}}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			e := Classify(tc.status, h, []byte(tc.body), now)
			got := struct {
				Class provider.Class
				Code  string
				Wait  time.Duration
			}{e.Class, e.Code, e.RetryAfter}
			want := struct {
				Class provider.Class
				Code  string
				Wait  time.Duration
			}{tc.class, tc.code, tc.wait}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Classify (-want +got):\n%s", diff)
			}
			if e.Provider != ProviderName || e.Status != tc.status || e.RequestID != "req_123" {
				t.Errorf("provider %q status %d request %q", e.Provider, e.Status, e.RequestID)
			}
			if e.Message == "" || len(e.Message) > maxMessage+len("…") {
				t.Errorf("message %q: want a short explanation", e.Message)
			}
		})
	}
}

func TestClassifyRetryAfterDate(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC)
	h := http.Header{"Retry-After": {now.Add(30 * time.Second).Format(http.TimeFormat)}}
	if e := Classify(429, h, []byte(`{"error":{"code":"rate_limit_exceeded","type":"requests","message":"x"}}`), now); e.RetryAfter != 30*time.Second {
		t.Errorf("RetryAfter %s; want 30s from the HTTP date", e.RetryAfter)
	}
}

func TestParseReset(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1s", time.Second, true},
		{"6m0s", 6 * time.Minute, true},
		{"20ms", 20 * time.Millisecond, true},
		{"7.188s", 7188 * time.Millisecond, true},
		{"1h2m3.5s", time.Hour + 2*time.Minute + 3500*time.Millisecond, true},
		{"0s", 0, true},
		{"2d3h", 51 * time.Hour, true},
		{"1d", 24 * time.Hour, true},
		{"17", 17 * time.Second, true},
		{" 0.5 ", 500 * time.Millisecond, true},
		{"", 0, false},
		{"soon", 0, false},
		{"-1s", 0, false},
		{"xd1s", 0, false},
	} {
		got, ok := ParseReset(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseReset(%q) = %s, %v; want %s, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestReferenceURLOnly(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAI(t)
	url := fake.Host("ref.png", providertest.Reference(), false)
	_, err := newClient(t, fake.URL()).Generate(context.Background(), provider.Request{
		Model: "gpt-image-1", Prompt: "p", Reference: provider.Image{URL: url},
	})
	if err != nil {
		t.Fatal(err)
	}
	var edits int
	for _, r := range fake.Requests() {
		if r.Path == "/v1/images/edits" {
			edits++
		}
	}
	if edits != 1 {
		t.Errorf("%d edits; want the URL downloaded and sent as an image[] part", edits)
	}

	gone := fake.Host("gone.png", nil, true)
	_, err = newClient(t, fake.URL()).Generate(context.Background(), provider.Request{
		Model: "gpt-image-1", Prompt: "p", Reference: provider.Image{URL: gone},
	})
	if provider.ClassOf(err) != provider.Transient || !strings.Contains(err.Error(), "fetch reference") {
		t.Errorf("err %v; want a Transient reference fetch failure", err)
	}
}

func TestCanceled(t *testing.T) {
	t.Parallel()
	fake := providertest.NewOpenAI(t)
	fake.Script(providertest.Slow)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := newClient(t, fake.URL()).Generate(ctx, provider.Request{
		Model: "gpt-image-1", Prompt: "p", Reference: provider.Image{Data: providertest.Reference()},
	})
	if !errors.Is(err, context.Canceled) || provider.ClassOf(err) != provider.Transient {
		t.Errorf("err %v; want Transient wrapping context.Canceled", err)
	}
}

// TestFakeRejects proves the fake catches the mistakes it is there to catch,
// so the protocol tests above mean something.
func TestFakeRejects(t *testing.T) {
	t.Parallel()
	ref := providertest.Reference() // 96x128
	opaque := providertest.PNG(96, 128, 1)
	goodMask, err := ConvertMask(encode(t, square(96, 128, 0, 0, 10, 10), "png"), 96, 128)
	if err != nil {
		t.Fatal(err)
	}
	smallMask, _ := ConvertMask(encode(t, square(48, 64, 0, 0, 10, 10), "png"), 48, 64)
	type file struct {
		name, ctype string
		data        []byte
	}
	base := map[string]string{"model": "gpt-image-1", "prompt": "p"}
	for _, tc := range []struct {
		name   string
		key    string
		fields map[string]string
		files  []file
		status int
		want   string
	}{
		{"ok", providertest.OpenAIKey, base, []file{{"image[]", "image/png", ref}, {"mask", "image/png", goodMask}}, 200, ""},
		{"wrong key", "sk-wrong", base, []file{{"image[]", "image/png", ref}}, 401, "Incorrect API key"},
		{"octet-stream image", providertest.OpenAIKey, base, []file{{"image[]", "application/octet-stream", ref}}, 400, "unsupported mimetype"},
		{"undecodable image", providertest.OpenAIKey, base, []file{{"image[]", "image/png", []byte("nope")}}, 400, "does not decode"},
		{"no image", providertest.OpenAIKey, base, nil, 400, "image[] parts"},
		{"no model", providertest.OpenAIKey, map[string]string{"prompt": "p"}, []file{{"image[]", "image/png", ref}}, 400, "model must be set"},
		{"moderation on edits", providertest.OpenAIKey, map[string]string{"model": "gpt-image-1", "prompt": "p", "moderation": "low"}, []file{{"image[]", "image/png", ref}}, 400, "Unknown parameter"},
		{"mask without alpha", providertest.OpenAIKey, base, []file{{"image[]", "image/png", ref}, {"mask", "image/png", opaque}}, 400, "alpha channel"},
		{"mask of another size", providertest.OpenAIKey, base, []file{{"image[]", "image/png", ref}, {"mask", "image/png", smallMask}}, 400, "mask is 48x64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewOpenAI(t)
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			for k, v := range tc.fields {
				mw.WriteField(k, v)
			}
			for _, f := range tc.files {
				h := make(map[string][]string)
				h["Content-Disposition"] = []string{`form-data; name="` + f.name + `"; filename="x"`}
				h["Content-Type"] = []string{f.ctype}
				w, _ := mw.CreatePart(h)
				w.Write(f.data)
			}
			mw.Close()
			req, _ := http.NewRequest(http.MethodPost, fake.URL()+"/images/edits", &buf)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			req.Header.Set("Authorization", "Bearer "+tc.key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Errorf("status %d body %.200s; want %d containing %q", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
}
