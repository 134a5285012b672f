package runway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
	"github.com/likeness-run/likeness/pkg/provider/runway"
)

func newClient(t *testing.T, baseURL string) *runway.Client {
	t.Helper()
	c, err := runway.New(runway.Config{BaseURL: baseURL, APIKey: providertest.RunwayKey, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setup starts a fake and a client pointed at it.
func setup(t *testing.T) (*providertest.RunwayFake, *runway.Client) {
	t.Helper()
	fake := providertest.NewRunway(t)
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

// calls lists "METHOD path" of the recorded requests.
func calls(reqs []providertest.Request) []string {
	var out []string
	for _, r := range reqs {
		out = append(out, r.Method+" "+r.Path)
	}
	return out
}

func count(reqs []providertest.Request, method, prefix string) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method && strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for model, params := range map[string]map[string]any{
		"gen4_image":       {"aspect_ratio": "3:4", "resolution": "720p"},
		"gen4_image_turbo": {"aspect_ratio": "16:9"},
	} {
		t.Run(model, func(t *testing.T) {
			t.Parallel()
			providertest.Run(t, providertest.Harness{
				NewFake: func(t *testing.T) providertest.Fake { return providertest.NewRunway(t) },
				NewGenerator: func(t *testing.T, baseURL string) provider.Generator {
					return newClient(t, baseURL)
				},
				Model:    model,
				Params:   params,
				Key:      providertest.RunwayKey,
				Provider: runway.ProviderName, FetchesURLs: true,
			})
		})
	}
}

func TestGenerateProtocol(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	res, err := c.Generate(context.Background(), request("gen4_image", map[string]any{"aspect_ratio": "1:1", "resolution": "720p"}))
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	reqs := fake.Requests()
	task := "/v1/tasks/" + res.RequestID
	want := []string{
		"POST /v1/text_to_image",
		"GET " + task, // PENDING
		"GET " + task, // THROTTLED
		"GET " + task, // RUNNING
		"GET " + task, // SUCCEEDED
	}
	if diff := cmp.Diff(want, calls(reqs)[:len(want)]); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	for _, r := range reqs {
		if strings.HasPrefix(r.Path, "/files/") {
			continue
		}
		if v := r.Header.Get("X-Runway-Version"); v != "2024-11-06" {
			t.Errorf("%s %s: X-Runway-Version %q; want 2024-11-06", r.Method, r.Path, v)
		}
		if a := r.Header.Get("Authorization"); a != "Bearer "+providertest.RunwayKey {
			t.Errorf("%s %s: Authorization header is not the bearer key", r.Method, r.Path)
		}
	}
	var body map[string]any
	if err := json.Unmarshal(reqs[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	wantBody := map[string]any{
		"model":           "gen4_image",
		"promptText":      "she is playing the piano (@mara)",
		"ratio":           "720:720",
		"referenceImages": []any{map[string]any{"uri": provider.DataURI(providertest.Reference()), "tag": "mara"}},
		"seed":            1234.0,
	}
	if diff := cmp.Diff(wantBody, body); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	if res.CostUSD != 0.05 {
		t.Errorf("cost %v; want 0.05 at 720p", res.CostUSD)
	}
	if res.RevisedPrompt != "she is playing the piano (@mara)" {
		t.Errorf("RevisedPrompt %q; want the promptText sent", res.RevisedPrompt)
	}
	if res.Image.ContentType != "image/png" {
		t.Errorf("content type %q", res.Image.ContentType)
	}
	if n := count(reqs, http.MethodDelete, "/v1/tasks/"); n != 0 {
		t.Errorf("%d DELETEs after a success; want none", n)
	}
}

func TestFakeRejectsMissingVersionHeader(t *testing.T) {
	t.Parallel()
	fake := providertest.NewRunway(t)
	req, _ := http.NewRequest(http.MethodGet, fake.URL()+"/v1/tasks/x", nil)
	req.Header.Set("Authorization", "Bearer "+providertest.RunwayKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d without X-Runway-Version; want 400", resp.StatusCode)
	}
}

func TestGenerateWaitsOutThrottled(t *testing.T) {
	t.Parallel()
	// The fake answers PENDING, THROTTLED, RUNNING, SUCCEEDED: THROTTLED
	// means Runway queued the task over the tier's concurrency, not that
	// it failed.
	fake, c := setup(t)
	if _, err := c.Generate(context.Background(), request("gen4_image_turbo", nil)); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if n := count(fake.Requests(), http.MethodGet, "/v1/tasks/"); n != 4 {
		t.Errorf("%d polls; want 4 (through THROTTLED to SUCCEEDED)", n)
	}
}

func TestGenerateFailureCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code  string
		class provider.Class
	}{
		{"SAFETY.INPUT.TEXT", provider.Safety},
		{"SAFETY.INPUT.IMAGE", provider.Safety},
		{"SAFETY.OUTPUT.IMAGE", provider.Safety},
		{"INPUT_PREPROCESSING.SAFETY.TEXT", provider.Safety},
		{"INPUT_PREPROCESSING.INTERNAL", provider.Transient},
		{"INTERNAL.BAD_OUTPUT.CODE01", provider.Transient},
		{"ASSET.INVALID", provider.Input},
		{"INTERNAL", provider.Transient},
		{"SOMETHING.NEW", provider.Transient},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			t.Parallel()
			if got := runway.ClassifyFailure(tt.code); got != tt.class {
				t.Errorf("ClassifyFailure(%q) = %s; want %s", tt.code, got, tt.class)
			}
			fake, c := setup(t)
			fake.Script(providertest.RunwayFailed(tt.code))
			_, err := c.Generate(context.Background(), request("gen4_image", nil))
			var pe *provider.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *provider.Error", err)
			}
			if pe.Class != tt.class || pe.Code != tt.code || pe.RequestID == "" {
				t.Errorf("class %s code %q request %q; want %s %q and the task id", pe.Class, pe.Code, pe.RequestID, tt.class, tt.code)
			}
			if n := count(fake.Requests(), http.MethodDelete, "/v1/tasks/"); n != 0 {
				t.Errorf("%d DELETEs of a finished task; want none", n)
			}
		})
	}
}

func TestGenerateCancelledTaskIsTransient(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.Script(providertest.Slow)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Another party deletes the task while we poll.
		for {
			for _, r := range fake.Requests() {
				if r.Method == http.MethodGet && strings.HasPrefix(r.Path, "/v1/tasks/") {
					req, _ := http.NewRequest(http.MethodDelete, fake.URL()+r.Path, nil)
					req.Header.Set("Authorization", "Bearer "+providertest.RunwayKey)
					req.Header.Set("X-Runway-Version", providertest.RunwayVersion)
					if resp, err := http.DefaultClient.Do(req); err == nil {
						resp.Body.Close()
					}
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	_, err := c.Generate(ctx, request("gen4_image", nil))
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.Transient || pe.Code != "CANCELLED" {
		t.Errorf("error %v; want Transient CANCELLED", err)
	}
}

func TestGenerateRefetchesExpiredOutput(t *testing.T) {
	t.Parallel()
	t.Run("fresh URL on re-fetch", func(t *testing.T) {
		t.Parallel()
		fake, c := setup(t)
		fake.Script(providertest.RunwayExpiredOnce)
		res, err := c.Generate(context.Background(), request("gen4_image", nil))
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if _, _, err := providertest.DecodeSize(res.Image.Data); err != nil {
			t.Errorf("output: %v", err)
		}
		reqs := fake.Requests()
		if n := count(reqs, http.MethodGet, "/v1/tasks/"); n != 5 {
			t.Errorf("%d task fetches; want 4 polls + 1 re-fetch", n)
		}
		if n := count(reqs, http.MethodGet, "/files/"); n != 2 {
			t.Errorf("%d downloads; want the expired one and the fresh one", n)
		}
	})
	t.Run("still expired", func(t *testing.T) {
		t.Parallel()
		fake, c := setup(t)
		fake.Script(providertest.OutputExpired)
		_, err := c.Generate(context.Background(), request("gen4_image", nil))
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Class != provider.Transient || pe.Code != "output_expired" || pe.RequestID == "" {
			t.Fatalf("error %v; want Transient output_expired with the task id", err)
		}
		reqs := fake.Requests()
		if n := count(reqs, http.MethodGet, "/v1/tasks/"); n != 5 {
			t.Errorf("%d task fetches; want exactly one re-fetch after the polls", n)
		}
		if n := count(reqs, http.MethodGet, "/files/"); n != 2 {
			t.Errorf("%d downloads; want 2", n)
		}
	})
}

func TestGenerateDeletesAbandonedTask(t *testing.T) {
	t.Parallel()
	fake := providertest.NewRunway(t)
	fake.Script(providertest.Slow) // the task stays RUNNING
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var died time.Time
	// The caller gives up after the second poll.
	poll := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/tasks/")
	}
	hc := providertest.ClientThatDies(2, poll, func() { died = time.Now(); cancel() })
	c, err := runway.New(runway.Config{BaseURL: fake.URL(), APIKey: providertest.RunwayKey, PollInterval: 10 * time.Millisecond, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Generate(ctx, request("gen4_image", nil))
	if took := time.Since(died); took > 2*time.Second {
		t.Errorf("returned %s after ctx ended; want promptly", took)
	}
	if !errors.Is(err, context.Canceled) || provider.ClassOf(err) != provider.Transient {
		t.Errorf("error %v; want a Transient error wrapping the cancellation", err)
	}
	reqs := fake.Requests()
	last := reqs[len(reqs)-1]
	if last.Method != http.MethodDelete || !strings.HasPrefix(last.Path, "/v1/tasks/") {
		t.Fatalf("last request %s %s; want DELETE of the task", last.Method, last.Path)
	}
	if v := last.Header.Get("X-Runway-Version"); v != providertest.RunwayVersion {
		t.Errorf("DELETE without X-Runway-Version (%q)", v)
	}
}

func TestRatio(t *testing.T) {
	t.Parallel()
	tests := []struct {
		aspect, res, want string
	}{
		{"16:9", "1080p", "1920:1080"},
		{"9:16", "1080p", "1080:1920"},
		{"4:3", "1080p", "1440:1080"},
		{"3:4", "1080p", "1080:1440"},
		{"1:1", "1080p", "1080:1080"},
		{"21:9", "1080p", "2112:912"},
		{"16:9", "720p", "1280:720"},
		{"9:16", "720p", "720:1280"},
		{"4:3", "720p", "960:720"},
		{"3:4", "720p", "720:960"},
		{"1:1", "720p", "720:720"},
		{"21:9", "720p", "1680:720"},
		{"", "", "1920:1080"},
		{"", "720p", "1280:720"},
	}
	for _, tt := range tests {
		got, err := runway.Ratio(tt.aspect, tt.res)
		if err != nil || got != tt.want {
			t.Errorf("Ratio(%q, %q) = %q, %v; want %q", tt.aspect, tt.res, got, err, tt.want)
		}
	}
	for _, bad := range [][2]string{{"9:21", "1080p"}, {"1:3", ""}, {"3:1", ""}, {"2:3", ""}, {"match_input_image", ""}, {"16:9", "4k"}} {
		if got, err := runway.Ratio(bad[0], bad[1]); err == nil {
			t.Errorf("Ratio(%q, %q) = %q; want an error", bad[0], bad[1], got)
		}
	}
}

func TestGenerateRejectsLocally(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  func() provider.Request
		code string
	}{
		{"unknown model", func() provider.Request { return request("gen3a_turbo", nil) }, "unknown_model"},
		{"aspect ratio outside the registry", func() provider.Request {
			return request("gen4_image", map[string]any{"aspect_ratio": "1:3"})
		}, "invalid_param"},
		{"reference too wide", func() provider.Request {
			r := request("gen4_image", nil)
			r.Reference.Data = providertest.PNG(300, 100, 1) // 3:1
			return r
		}, "invalid_reference"},
		{"reference too tall", func() provider.Request {
			r := request("gen4_image", nil)
			r.Reference.Data = providertest.PNG(40, 100, 1) // 0.4
			return r
		}, "invalid_reference"},
		{"reference not an image type Runway takes", func() provider.Request {
			r := request("gen4_image", nil)
			r.Reference.Data = []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00")
			return r
		}, "invalid_reference"},
		{"turbo without reference", func() provider.Request {
			r := request("gen4_image_turbo", nil)
			r.Reference = provider.Image{}
			return r
		}, "invalid_reference"},
		{"inpainting", func() provider.Request {
			r := request("gen4_image", nil)
			r.Image, r.Mask = &provider.Image{Data: providertest.PNG(8, 8, 1)}, &provider.Image{Data: providertest.PNG(8, 8, 2)}
			return r
		}, "unsupported"},
		{"prompt too long with the tag", func() provider.Request {
			r := request("gen4_image", nil)
			r.Prompt = strings.Repeat("é", 995)
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

func TestGenerateReference(t *testing.T) {
	t.Parallel()
	t.Run("https URL is sent as is", func(t *testing.T) {
		t.Parallel()
		fake, c := setup(t)
		req := request("gen4_image", nil)
		req.Reference.URL = "https://bucket.example.com/refs/mara.png"
		if _, err := c.Generate(context.Background(), req); err != nil {
			t.Fatalf("Generate: %v", err)
		}
		if body := string(fake.Requests()[0].Body); !strings.Contains(body, `"uri":"https://bucket.example.com/refs/mara.png"`) {
			t.Errorf("body %s; want the reference URL", body)
		}
	})
	t.Run("no reference for gen4_image: no tag", func(t *testing.T) {
		t.Parallel()
		fake, c := setup(t)
		req := request("gen4_image", nil)
		req.Reference = provider.Image{}
		res, err := c.Generate(context.Background(), req)
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		var body map[string]any
		_ = json.Unmarshal(fake.Requests()[0].Body, &body)
		if _, ok := body["referenceImages"]; ok || body["promptText"] != "she is playing the piano" || res.RevisedPrompt != "" {
			t.Errorf("body %v, revised %q; want the prompt untouched and no references", body, res.RevisedPrompt)
		}
	})
}

func TestTag(t *testing.T) {
	t.Parallel()
	rule := regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{2,15}$`)
	tests := map[string]string{
		"mara":                  "mara",
		"Mara2":                 "Mara2",
		"mara-2":                "mara_2",
		"mara_b":                "mara_b",
		"Zoë K":                 "Zo_K",
		"7up":                   "char_7up",
		"al":                    "al_ref",
		"x":                     "x_ref",
		"__x__":                 "x_ref",
		"":                      "character",
		"日本":                    "character",
		"the-very-long-name-id": "the_very_long_na",
		"abcdefghijklmno-p":     "abcdefghijklmno",
	}
	for in, want := range tests {
		got := runway.Tag(in)
		if got != want {
			t.Errorf("Tag(%q) = %q; want %q", in, got, want)
		}
		if !rule.MatchString(got) {
			t.Errorf("Tag(%q) = %q breaks Runway's tag rule", in, got)
		}
	}
}

func TestPromptWithTag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prompt, character, tag, want string
	}{
		{"she is playing the piano", "mara", "mara", "she is playing the piano (@mara)"},
		{"@mara is playing the piano", "mara", "mara", "@mara is playing the piano"},
		{"@maravilla plays", "mara", "mara", "@maravilla plays (@mara)"},
		{"@mara-2 plays, @mara-2 sings", "mara-2", "mara_2", "@mara_2 plays, @mara_2 sings"},
		{"plays the piano \n", "mara", "mara", "plays the piano (@mara)"},
	}
	for _, tt := range tests {
		if got := runway.PromptWithTag(tt.prompt, tt.character, tt.tag); got != tt.want {
			t.Errorf("PromptWithTag(%q, %q, %q) = %q; want %q", tt.prompt, tt.character, tt.tag, got, tt.want)
		}
	}
}

// TestClassify runs recorded Runway answers (status codes and body shapes
// from providers.md section 4 and Runway's errors page; exact wordings are
// unconfirmed where marked) through the classifier.
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
			name: "400 validation with issues", status: 400,
			body:  `{"error":"Validation of body failed","issues":[{"code":"invalid_enum_value","path":["ratio"],"message":"Invalid enum value"}]}`,
			class: provider.Input, msg: "ratio: Invalid enum value",
		},
		{
			name: "400 asset fetch failed", status: 400,
			body:  `{"error":"Failed to fetch asset: the URL did not answer HEAD with a Content-Type"}`,
			class: provider.Input, msg: "Failed to fetch asset",
		},
		{
			// Wording unconfirmed; classified by body.
			name: "400 out of credits", status: 400,
			body:  `{"error":"You do not have enough credits to run this task."}`,
			class: provider.Billing, code: "insufficient_credits",
		},
		{name: "401 bad key", status: 401, body: `{"error":"Unauthorized"}`, class: provider.Billing},
		{name: "404", status: 404, body: `{"error":"Not found"}`, class: provider.Input},
		{name: "405", status: 405, body: ``, class: provider.Input, msg: "Method Not Allowed"},
		{
			name: "429 daily cap with Retry-After", status: 429,
			header: http.Header{"Retry-After": {"7"}},
			body:   `{"error":"You have exceeded the maximum number of generations for this model in a 24-hour period."}`,
			class:  provider.Rate, wait: 7 * time.Second, msg: "24-hour period",
		},
		{
			name: "429 without Retry-After waits long", status: 429,
			body:  `{"error":"Too many requests"}`,
			class: provider.Rate, wait: runway.DefaultRateWait,
		},
		{name: "502", status: 502, body: `<html>Bad Gateway</html>`, class: provider.Transient},
		{name: "503 load shedding", status: 503, body: `{"error":"Service unavailable"}`, class: provider.Transient},
		{name: "504 overloaded", status: 504, body: ``, class: provider.Transient, msg: "Gateway Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := runway.Classify(tt.status, tt.header, []byte(tt.body), runway.DefaultRateWait)
			if e.Class != tt.class || e.Code != tt.code || e.RetryAfter != tt.wait || e.Status != tt.status || e.Provider != "runway" {
				t.Errorf("got class %s code %q wait %s status %d; want %s %q %s %d",
					e.Class, e.Code, e.RetryAfter, e.Status, tt.class, tt.code, tt.wait, tt.status)
			}
			if !strings.Contains(e.Message, tt.msg) {
				t.Errorf("message %q; want it to contain %q", e.Message, tt.msg)
			}
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	if _, err := runway.New(runway.Config{}); err == nil {
		t.Error("New without a key succeeded")
	}
	if _, err := runway.New(runway.Config{APIKey: "k", BaseURL: "ftp://x"}); err == nil {
		t.Error("New with a non-http base URL succeeded")
	}
	if _, err := runway.New(runway.Config{APIKey: "k"}); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	reg := provider.DefaultRegistry()
	img, ok := reg.Lookup("runway:gen4_image")
	if !ok {
		t.Fatal("runway:gen4_image not in the registry")
	}
	for res, want := range map[string]float64{"720p": 0.05, "1080p": 0.08} {
		if got := img.Pricing.For(map[string]any{"resolution": res}); got != want {
			t.Errorf("gen4_image at %s costs %v; want %v", res, got, want)
		}
	}
	if got := img.Pricing.For(nil); got != 0.08 {
		t.Errorf("gen4_image at the default resolution costs %v; want 0.08", got)
	}
	turbo, ok := reg.Lookup("runway:gen4_image_turbo")
	if !ok {
		t.Fatal("runway:gen4_image_turbo not in the registry")
	}
	if got := turbo.Pricing.For(map[string]any{"resolution": "1080p"}); got != 0.02 {
		t.Errorf("turbo costs %v; want 0.02", got)
	}
	for _, m := range []provider.Model{img, turbo} {
		if want := (provider.Limits{Key: m.Ref, Concurrency: 2}); m.Limits != want {
			t.Errorf("%s limits %+v; want %+v", m.Ref, m.Limits, want)
		}
		// Every registry aspect ratio and resolution must map to a size.
		ar, _ := m.Param("aspect_ratio")
		rs, _ := m.Param("resolution")
		for _, a := range ar.Enum {
			for _, r := range rs.Enum {
				if _, err := runway.Ratio(a, r); err != nil {
					t.Errorf("%s: %s at %s: %v", m.Ref, a, r, err)
				}
			}
		}
	}
}
