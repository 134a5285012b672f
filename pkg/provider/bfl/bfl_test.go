package bfl_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/bfl"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
)

func newClient(t *testing.T, baseURL string) *bfl.Client {
	t.Helper()
	c, err := bfl.New(bfl.Config{BaseURL: baseURL, APIKey: providertest.BFLKey, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setup starts a fake and a client pointed at it.
func setup(t *testing.T) (*providertest.BFLFake, *bfl.Client) {
	t.Helper()
	fake := providertest.NewBFL(t)
	return fake, newClient(t, fake.URL())
}

func request(model string, params map[string]any) provider.Request {
	ref := providertest.Reference()
	return provider.Request{
		Model: model, Prompt: "she is playing the piano", Character: "mara",
		Reference: provider.Image{Data: ref, ContentType: http.DetectContentType(ref)},
		Seed:      1234, Params: params,
	}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, model := range []string{"flux-kontext-pro", "flux-kontext-max"} {
		t.Run(model, func(t *testing.T) {
			t.Parallel()
			providertest.Run(t, providertest.Harness{
				NewFake: func(t *testing.T) providertest.Fake { return providertest.NewBFL(t) },
				NewGenerator: func(t *testing.T, baseURL string) provider.Generator {
					return newClient(t, baseURL)
				},
				Model:    model,
				Params:   map[string]any{"output_format": "png", "aspect_ratio": "3:4"},
				Key:      providertest.BFLKey,
				Provider: bfl.ProviderName, FetchesURLs: true,
			})
		})
	}
}

func TestGenerateFollowsPollingURL(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	res, err := c.Generate(context.Background(), request("flux-kontext-pro", nil))
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	// The fake's polling_url is on another host; the API host itself
	// answers "Task not found" for it, so success means the returned URL
	// was polled, not one built from the id.
	self, err := http.NewRequest(http.MethodGet, fake.URL()+"/get_result?id="+res.RequestID, nil)
	if err != nil {
		t.Fatal(err)
	}
	self.Header.Set("x-key", providertest.BFLKey)
	resp, err := http.DefaultClient.Do(self)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var built struct{ Status string }
	_ = json.NewDecoder(resp.Body).Decode(&built)
	if built.Status != "Task not found" {
		t.Fatalf("the fake answers a self-built poll URL with %q; the test proves nothing", built.Status)
	}

	var got []string
	for _, r := range fake.Requests()[:4] {
		got = append(got, r.Method+" "+r.Path)
		if k := r.Header.Get("x-key"); r.Path != "/files/bfl-"+res.RequestID+".png" && k != providertest.BFLKey {
			t.Errorf("%s %s: x-key %q; want the key", r.Method, r.Path, k)
		}
	}
	want := []string{
		"POST /v1/flux-kontext-pro",
		"GET /v1/get_result", // Pending
		"GET /v1/get_result", // Ready
		"GET /files/bfl-" + res.RequestID + ".png",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	if res.Seed != 1234 {
		t.Errorf("seed %d; want the seed BFL reports (1234)", res.Seed)
	}
	if res.CostUSD != 0.04 {
		t.Errorf("cost %v; want 0.04", res.CostUSD)
	}
	if res.Image.ContentType != "image/png" {
		t.Errorf("content type %q; want image/png sniffed", res.Image.ContentType)
	}
}

func TestGenerateRequestBody(t *testing.T) {
	t.Parallel()
	ref := providertest.Reference()
	b64 := base64.StdEncoding.EncodeToString(ref)
	tests := []struct {
		name   string
		model  string
		params map[string]any
		url    string
		want   map[string]any
	}{
		{
			name:  "defaults",
			model: "flux-kontext-pro",
			want:  map[string]any{"prompt": "she is playing the piano", "input_image": b64, "seed": 1234.0},
		},
		{
			name:  "params mapped",
			model: "flux-kontext-max",
			params: map[string]any{
				"aspect_ratio": "16:9", "output_format": "jpg",
				"safety_tolerance": 1, "prompt_upsampling": true,
			},
			want: map[string]any{
				"prompt": "she is playing the piano", "input_image": b64, "seed": 1234.0,
				"aspect_ratio": "16:9", "output_format": "jpeg",
				"safety_tolerance": 1.0, "prompt_upsampling": true,
			},
		},
		{
			name:   "match_input_image is BFL's default and omitted",
			model:  "flux-kontext-pro",
			params: map[string]any{"aspect_ratio": "match_input_image", "output_format": "png"},
			want:   map[string]any{"prompt": "she is playing the piano", "input_image": b64, "seed": 1234.0, "output_format": "png"},
		},
		{
			// The registry caps it at 2 for specs; a request built
			// elsewhere is clamped to BFL's limit with an input image.
			name:   "safety_tolerance clamped to 2 with an input image",
			model:  "flux-kontext-pro",
			params: map[string]any{"safety_tolerance": 6},
			want:   map[string]any{"prompt": "she is playing the piano", "input_image": b64, "seed": 1234.0, "safety_tolerance": 2.0},
		},
		{
			name:  "reference URL preferred over bytes",
			model: "flux-kontext-pro",
			url:   "https://bucket.example.com/refs/abc.png?X-Amz-Signature=x",
			want:  map[string]any{"prompt": "she is playing the piano", "input_image": "https://bucket.example.com/refs/abc.png?X-Amz-Signature=x", "seed": 1234.0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake, c := setup(t)
			req := request(tt.model, tt.params)
			req.Reference.URL = tt.url
			if _, err := c.Generate(context.Background(), req); err != nil {
				t.Fatalf("Generate: %v", err)
			}
			sub := fake.Requests()[0]
			if sub.Path != "/v1/"+tt.model {
				t.Errorf("path %s; want /v1/%s", sub.Path, tt.model)
			}
			if ct := sub.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var got map[string]any
			if err := json.Unmarshal(sub.Body, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGeneratePollStatuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scenario providertest.Scenario
		class    provider.Class
		code     string
	}{
		{providertest.Moderated, provider.Safety, "Request Moderated"},
		{providertest.BFLStatus("Request Moderated"), provider.Safety, "Request Moderated"},
		{providertest.BFLStatus("Content Moderated"), provider.Safety, "Content Moderated"},
		{providertest.BFLStatus("Error"), provider.Transient, "Error"},
		{providertest.BFLStatus("Failed"), provider.Transient, "Failed"},
		{providertest.BFLStatus("Task not found"), provider.Transient, "task_not_found"},
		{providertest.TaskFailed, provider.Transient, "Error"},
	}
	for _, tt := range tests {
		t.Run(string(tt.scenario), func(t *testing.T) {
			t.Parallel()
			fake, c := setup(t)
			fake.Script(tt.scenario)
			_, err := c.Generate(context.Background(), request("flux-kontext-pro", nil))
			var pe *provider.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *provider.Error", err)
			}
			if pe.Class != tt.class || pe.Code != tt.code {
				t.Errorf("class %s code %q; want %s %q (%v)", pe.Class, pe.Code, tt.class, tt.code, err)
			}
			if pe.RequestID == "" {
				t.Error("no task id in the error")
			}
		})
	}
}

func TestGenerateModerationMessageCarriesReasons(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.Script(providertest.BFLStatus("Content Moderated"))
	_, err := c.Generate(context.Background(), request("flux-kontext-pro", nil))
	if err == nil || !strings.Contains(err.Error(), "Derivative Works Filter") {
		t.Errorf("error %v; want the moderation reasons from details", err)
	}
	if !errors.Is(err, provider.ErrSafety) {
		t.Errorf("errors.Is(err, ErrSafety) is false for %v", err)
	}
}

// TestClassify runs recorded BFL answers (status, headers, body as
// providers.md section 3 and BFL's integration guide show them) through the
// classifier.
func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		class  provider.Class
		code   string
		wait   time.Duration
		msg    string
	}{
		{
			name: "429 active-task cap with Retry-After and guide body", status: 429,
			header: http.Header{"Retry-After": {"7"}, "X-Ratelimit-Limit": {"24"}},
			body:   `{"error":"rate_limit_exceeded","message":"Too many concurrent requests","retry_after":5}`,
			class:  provider.Rate, code: "rate_limit_exceeded", wait: 7 * time.Second, msg: "Too many concurrent requests",
		},
		{
			name: "429 with body retry_after only", status: 429,
			body:  `{"error":"rate_limit_exceeded","message":"Too many concurrent requests","retry_after":5}`,
			class: provider.Rate, code: "rate_limit_exceeded", wait: 5 * time.Second,
		},
		{
			name: "429 without a hint waits the default", status: 429,
			body:  `{"detail":"Too many active tasks"}`,
			class: provider.Rate, wait: bfl.DefaultRateWait, msg: "Too many active tasks",
		},
		{
			name: "402 insufficient credits", status: 402,
			body:  `{"detail":"Insufficient credits"}`,
			class: provider.Billing, msg: "Insufficient credits",
		},
		{
			name: "403 bad key", status: 403,
			body:  `{"detail":"Not authenticated - Invalid Authentication"}`,
			class: provider.Billing, msg: "Not authenticated",
		},
		{
			name: "401", status: 401, body: `{"detail":"Unauthorized"}`, class: provider.Billing,
		},
		{
			name: "422 schema error", status: 422,
			body:  `{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"value_error.missing"}]}`,
			class: provider.Input, msg: "body.prompt: field required",
		},
		{
			name: "400 bad request", status: 400, body: `{"detail":"Invalid image"}`, class: provider.Input, msg: "Invalid image",
		},
		{
			name: "404 unknown endpoint", status: 404, body: `{"detail":"Not Found"}`, class: provider.Input,
		},
		{
			name: "500", status: 500, body: `Internal Server Error`, class: provider.Transient, msg: "Internal Server Error",
		},
		{
			name: "503 maintenance", status: 503, body: `{"detail":"Service Unavailable"}`, class: provider.Transient,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := bfl.Classify(tt.status, tt.header, []byte(tt.body), bfl.DefaultRateWait)
			if e.Class != tt.class || e.Code != tt.code || e.RetryAfter != tt.wait || e.Status != tt.status || e.Provider != "bfl" {
				t.Errorf("got class %s code %q wait %s status %d; want %s %q %s %d",
					e.Class, e.Code, e.RetryAfter, e.Status, tt.class, tt.code, tt.wait, tt.status)
			}
			if !strings.Contains(e.Message, tt.msg) {
				t.Errorf("message %q; want it to contain %q", e.Message, tt.msg)
			}
		})
	}
}

func TestGenerateRejectsLocally(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  func() provider.Request
		code string
	}{
		{"unknown model", func() provider.Request { return request("flux-kontext-dev", nil) }, "unknown_model"},
		{"bad param", func() provider.Request {
			return request("flux-kontext-pro", map[string]any{"aspect_ratio": "5:1"})
		}, "invalid_param"},
		{"unknown param", func() provider.Request {
			return request("flux-kontext-pro", map[string]any{"guidance": 3})
		}, "invalid_param"},
		{"inpainting", func() provider.Request {
			r := request("flux-kontext-pro", nil)
			r.Image, r.Mask = &provider.Image{Data: providertest.PNG(8, 8, 1)}, &provider.Image{Data: providertest.PNG(8, 8, 2)}
			return r
		}, "unsupported"},
		{"empty prompt", func() provider.Request {
			r := request("flux-kontext-pro", nil)
			r.Prompt = " "
			return r
		}, "invalid_prompt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake, c := setup(t)
			_, err := c.Generate(context.Background(), tt.req())
			var pe *provider.Error
			if !errors.As(err, &pe) || pe.Class != provider.Input || pe.Code != tt.code {
				t.Fatalf("error %v; want Input %q", err, tt.code)
			}
			if n := len(fake.Requests()); n != 0 {
				t.Errorf("%d requests sent for a request rejected locally", n)
			}
		})
	}
}

func TestGenerateHonoursContextWhilePolling(t *testing.T) {
	t.Parallel()
	fake := providertest.NewBFL(t)
	c, err := bfl.New(bfl.Config{BaseURL: fake.URL(), APIKey: providertest.BFLKey, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	_, err = c.Generate(ctx, request("flux-kontext-pro", nil))
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("returned after %s; want promptly at the deadline", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || provider.ClassOf(err) != provider.Transient {
		t.Errorf("error %v; want a Transient error wrapping the deadline", err)
	}
	if provider.RetryAfterOf(err) != 0 {
		t.Error("a canceled wait is not a rate limit")
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	if _, err := bfl.New(bfl.Config{}); err == nil {
		t.Error("New without a key succeeded")
	}
	if _, err := bfl.New(bfl.Config{APIKey: "k", BaseURL: "api.bfl.ai"}); err == nil {
		t.Error("New with a base URL without scheme succeeded")
	}
	if _, err := bfl.New(bfl.Config{APIKey: "k"}); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	reg := provider.DefaultRegistry()
	for ref, want := range map[string]struct {
		price float64
		lim   provider.Limits
	}{
		"bfl:flux-kontext-pro": {0.04, provider.Limits{Key: "bfl", Concurrency: 24}},
		"bfl:flux-kontext-max": {0.08, provider.Limits{Key: "bfl:flux-kontext-max", Concurrency: 6}},
	} {
		m, ok := reg.Lookup(ref)
		if !ok {
			t.Fatalf("%s not in the registry", ref)
		}
		if got := m.Pricing.For(nil); got != want.price {
			t.Errorf("%s price %v; want %v", ref, got, want.price)
		}
		if diff := cmp.Diff(want.lim, m.Limits); diff != "" {
			t.Errorf("%s limits (-want +got):\n%s", ref, diff)
		}
		for _, name := range []string{"prompt", "input_image", "seed"} {
			if _, ok := m.Param(name); ok {
				t.Errorf("%s lists %q, which likeness supplies itself", ref, name)
			}
		}
		if _, err := reg.Resolve(ref, map[string]any{"safety_tolerance": 3}); err == nil {
			t.Errorf("%s accepts safety_tolerance 3; BFL allows at most 2 with an input image", ref)
		}
	}
}
