package ideogram_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/ideogram"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
)

const model = "ideogram-3-character"

func newClient(t *testing.T, baseURL string) *ideogram.Client {
	t.Helper()
	c, err := ideogram.New(ideogram.Config{BaseURL: baseURL, APIKey: providertest.IdeogramKey})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(params map[string]any) provider.Request {
	ref := providertest.Reference()
	return provider.Request{
		Model: model, Prompt: "she is playing the piano", Character: "mara",
		Reference: provider.Image{Data: ref, ContentType: "image/png"},
		Seed:      1234, Params: params,
	}
}

// generations returns the recorded generation requests (not downloads).
func generations(f *providertest.IdeogramFake) []providertest.Request {
	var out []providertest.Request
	for _, r := range f.Requests() {
		if r.Method == http.MethodPost {
			out = append(out, r)
		}
	}
	return out
}

func TestConformance(t *testing.T) {
	t.Parallel()
	providertest.Run(t, providertest.Harness{
		NewFake: func(t *testing.T) providertest.Fake { return providertest.NewIdeogram(t) },
		NewGenerator: func(t *testing.T, baseURL string) provider.Generator {
			return newClient(t, baseURL)
		},
		Model:    model,
		Params:   map[string]any{"rendering_speed": "Turbo", "style_type": "Realistic"},
		Key:      providertest.IdeogramKey,
		Provider: ideogram.ProviderName,
	})
}

func TestNewRequiresKey(t *testing.T) {
	t.Parallel()
	if _, err := ideogram.New(ideogram.Config{}); err == nil {
		t.Fatal("New without an API key succeeded")
	}
	if _, err := ideogram.New(ideogram.Config{APIKey: "k", BaseURL: "ftp://x"}); err == nil {
		t.Fatal("New accepted a non-http base URL")
	}
}

// TestClassification replays recorded Ideogram answers (status, headers,
// body) and checks how each is classified. Bodies follow
// shared/providers.md section 5; the 429 body is the documented one.
func TestClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		class      provider.Class
		code       string
		retryAfter time.Duration
		message    string
	}{
		{name: "inflight limit with Retry-After", status: 429, header: map[string]string{"Retry-After": "7"},
			body: providertest.IdeogramBodyInflight, class: provider.Rate, code: "inflight_limit", retryAfter: 7 * time.Second,
			message: "max 10 in flight"},
		{name: "inflight limit without a hint", status: 429,
			body:  `{"error": "Too many in-flight requests", "reject_reason": "inflight_limit", "max_inflight_requests": 10, "task_completion_speed": 12.5}`,
			class: provider.Rate, code: "inflight_limit", retryAfter: ideogram.DefaultRateLimitWait},
		{name: "insufficient funds", status: 402, body: providertest.IdeogramBodyInsufficientFunds,
			class: provider.Billing, code: "insufficient_funds", message: "Insufficient funds"},
		{name: "daily limit", status: 402, body: providertest.IdeogramBodyDailyLimit,
			class: provider.Billing, code: "daily_limit"},
		{name: "bad key", status: 401, body: providertest.IdeogramBodyUnauthorized, class: provider.Billing},
		{name: "no access", status: 403, body: `{"error":"You do not have access to this endpoint"}`, class: provider.Billing},
		{name: "invalid request", status: 400, body: providertest.IdeogramBodyBadInput, class: provider.Input, message: "Invalid input"},
		{name: "validation detail list", status: 400, body: `{"detail":[{"loc":["body","aspect_ratio"],"msg":"value is not a valid enumeration member","type":"type_error.enum"}]}`,
			class: provider.Input, message: "not a valid enumeration member"},
		{name: "not found", status: 404, body: `{"error":"Not found"}`, class: provider.Input},
		{name: "upload too large", status: 413, body: `<html><body>413 Request Entity Too Large</body></html>`, class: provider.Input},
		{name: "safety check", status: 422, body: providertest.IdeogramBodySafety, class: provider.Safety, message: "failed the safety checks"},
		{name: "server error", status: 500, body: providertest.IdeogramBodyServerError, class: provider.Transient},
		{name: "bad gateway html", status: 502, body: `<html>502 Bad Gateway</html>`, class: provider.Transient},
		{name: "unavailable", status: 503, body: ``, class: provider.Transient},
		{name: "withheld output", status: 200,
			body:  `{"created":"2025-09-04T12:00:00Z","data":[{"url":null,"prompt":"p","resolution":"1024x1024","is_image_safe":false,"seed":1234,"style_type":"REALISTIC"}]}`,
			class: provider.Safety, code: "is_image_safe_false", message: "billed"},
		{name: "safe but no url", status: 200,
			body:  `{"created":"2025-09-04T12:00:00Z","data":[{"url":"","prompt":"p","resolution":"1024x1024","is_image_safe":true,"seed":1234,"style_type":"REALISTIC"}]}`,
			class: provider.Transient},
		{name: "no images", status: 200, body: `{"created":"2025-09-04T12:00:00Z","data":[]}`, class: provider.Transient},
		{name: "not json", status: 200, body: `<html>oops</html>`, class: provider.Transient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := replay(t, tt.status, tt.header, tt.body)
			_, err := newClient(t, srv.URL).Generate(context.Background(), request(nil))
			var pe *provider.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v; want *provider.Error", err, err)
			}
			got := struct {
				Class      provider.Class
				Code       string
				RetryAfter time.Duration
				Provider   string
			}{pe.Class, pe.Code, pe.RetryAfter, pe.Provider}
			want := struct {
				Class      provider.Class
				Code       string
				RetryAfter time.Duration
				Provider   string
			}{tt.class, tt.code, tt.retryAfter, "ideogram"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("classification (-want +got):\n%s\nerror: %v", diff, err)
			}
			if !strings.Contains(pe.Error(), tt.message) {
				t.Errorf("error %q does not mention %q", pe.Error(), tt.message)
			}
			if len(pe.Message) > 320 {
				t.Errorf("message is %d bytes; want it truncated", len(pe.Message))
			}
		})
	}
}

// replay serves one recorded answer on loopback.
func replay(t *testing.T, status int, header map[string]string, body string) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func TestAuthHeader(t *testing.T) {
	t.Parallel()
	fake := providertest.NewIdeogram(t)
	if _, err := newClient(t, fake.URL()).Generate(context.Background(), request(nil)); err != nil {
		t.Fatal(err)
	}
	reqs := generations(fake)
	if len(reqs) != 1 {
		t.Fatalf("%d generation requests; want 1", len(reqs))
	}
	h := reqs[0].Header
	if got := h.Get("Api-Key"); got != providertest.IdeogramKey {
		t.Errorf("Api-Key header %q; want the configured key", got)
	}
	if got := h.Get("Authorization"); got != "" {
		t.Errorf("Authorization header %q sent; Ideogram uses Api-Key only", got)
	}
	// Downloads of the output go to a public link and carry no key.
	for _, r := range fake.Requests() {
		if r.Method == http.MethodGet && (r.Header.Get("Api-Key") != "" || r.Header.Get("Authorization") != "") {
			t.Errorf("download %s carried credentials", r.Path)
		}
	}
}

func TestWrongKeyIsBilling(t *testing.T) {
	t.Parallel()
	fake := providertest.NewIdeogram(t)
	c, err := ideogram.New(ideogram.Config{BaseURL: fake.URL(), APIKey: "not-the-key"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Generate(context.Background(), request(nil))
	if provider.ClassOf(err) != provider.Billing || !errors.Is(err, provider.ErrBilling) {
		t.Fatalf("wrong key: %v; want a billing/config error", err)
	}
}

func TestFormMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		params map[string]any
		want   map[string]string
		absent []string
		cost   float64
	}{{
		name:   "defaults",
		want:   map[string]string{"prompt": "she is playing the piano", "seed": "1234", "num_images": "1", "style_type": "AUTO"},
		absent: []string{"rendering_speed", "magic_prompt", "aspect_ratio", "resolution", "negative_prompt"},
		cost:   0.15,
	}, {
		name: "replicate values mapped",
		params: map[string]any{"rendering_speed": "Turbo", "style_type": "Fiction", "aspect_ratio": "3:4",
			"magic_prompt_option": "On", "negative_prompt": "hats", "resolution": "None"},
		want: map[string]string{"rendering_speed": "TURBO", "style_type": "FICTION", "aspect_ratio": "3x4",
			"magic_prompt": "ON", "negative_prompt": "hats", "num_images": "1"},
		absent: []string{"resolution"},
		cost:   0.10,
	}, {
		name:   "resolution wins over aspect ratio",
		params: map[string]any{"rendering_speed": "Quality", "style_type": "Realistic", "aspect_ratio": "16:9", "resolution": "1344x768", "magic_prompt_option": "Off"},
		want:   map[string]string{"rendering_speed": "QUALITY", "style_type": "REALISTIC", "resolution": "1344x768", "magic_prompt": "OFF"},
		absent: []string{"aspect_ratio"},
		cost:   0.20,
	}, {
		name:   "default speed",
		params: map[string]any{"rendering_speed": "Default", "magic_prompt_option": "Auto", "style_type": "Auto", "aspect_ratio": "16:10"},
		want:   map[string]string{"rendering_speed": "DEFAULT", "magic_prompt": "AUTO", "style_type": "AUTO", "aspect_ratio": "16x10"},
		cost:   0.15,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewIdeogram(t)
			res, err := newClient(t, fake.URL()).Generate(context.Background(), request(tt.params))
			if err != nil {
				t.Fatal(err)
			}
			if res.CostUSD != tt.cost {
				t.Errorf("cost %v; want %v", res.CostUSD, tt.cost)
			}
			reqs := generations(fake)
			if len(reqs) != 1 || reqs[0].Path != "/v1/ideogram-v3/generate" {
				t.Fatalf("requests %v; want one POST /v1/ideogram-v3/generate", reqs)
			}
			form, err := providertest.IdeogramForm(reqs[0])
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if got := form.Value[k]; len(got) != 1 || got[0] != v {
					t.Errorf("field %s = %q; want [%q]", k, got, v)
				}
			}
			for _, k := range tt.absent {
				if got, ok := form.Value[k]; ok {
					t.Errorf("field %s = %q; want it absent", k, got)
				}
			}
			refs := form.File["character_reference_images"]
			if len(refs) != 1 {
				t.Fatalf("%d character_reference_images parts; want 1", len(refs))
			}
			if ct := refs[0].Header.Get("Content-Type"); ct != "image/png" {
				t.Errorf("reference part content type %q; want image/png", ct)
			}
			if got := readPart(t, form.File["character_reference_images"][0]); !bytes.Equal(got, providertest.Reference()) {
				t.Error("the reference part is not the reference bytes")
			}
		})
	}
}

func TestReferenceFormats(t *testing.T) {
	t.Parallel()
	webp, err := os.ReadFile("testdata/reference.webp")
	if err != nil {
		t.Fatal(err)
	}
	var gifBuf bytes.Buffer
	pal := image.NewPaletted(image.Rect(0, 0, 40, 50), []color.Color{color.Black, color.White})
	pal.SetColorIndex(5, 5, 1)
	if err := gif.Encode(&gifBuf, pal, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		data   []byte
		wantCT string
		same   bool
	}{
		{"webp is sent as is", webp, "image/webp", true},
		{"gif is converted to png", gifBuf.Bytes(), "image/png", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewIdeogram(t)
			req := request(nil)
			req.Reference = provider.Image{Data: tt.data}
			if _, err := newClient(t, fake.URL()).Generate(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			form, err := providertest.IdeogramForm(generations(fake)[0])
			if err != nil {
				t.Fatal(err)
			}
			part := form.File["character_reference_images"][0]
			if ct := part.Header.Get("Content-Type"); ct != tt.wantCT {
				t.Errorf("content type %q; want %q", ct, tt.wantCT)
			}
			if got := readPart(t, part); bytes.Equal(got, tt.data) != tt.same {
				t.Errorf("bytes unchanged = %v; want %v", !tt.same, tt.same)
			}
		})
	}
}

func TestMaskInversion(t *testing.T) {
	t.Parallel()
	fake := providertest.NewIdeogram(t)
	// Neutral mask: left half black (keep), right half white (repaint),
	// plus one dark-grey JPEG-noise pixel in the kept half and one mid-grey
	// pixel in it that must be repainted.
	const w, h = 32, 24
	neutral := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := color.NRGBA{0, 0, 0, 255}
			if x >= w/2 {
				c = color.NRGBA{255, 255, 255, 255}
			}
			neutral.SetNRGBA(x, y, c)
		}
	}
	neutral.SetNRGBA(2, 2, color.NRGBA{6, 3, 5, 255})       // noise: still keep
	neutral.SetNRGBA(3, 3, color.NRGBA{128, 128, 128, 255}) // non-black: repaint
	src := providertest.PNG(w, h, 9)
	req := request(map[string]any{"aspect_ratio": "16:9", "negative_prompt": "hats", "rendering_speed": "Turbo"})
	req.Image = &provider.Image{Data: src, ContentType: "image/png"}
	req.Mask = &provider.Image{Data: encodePNG(t, neutral), ContentType: "image/png"}

	res, err := newClient(t, fake.URL()).Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.CostUSD != 0.10 {
		t.Errorf("cost %v; want the Turbo price", res.CostUSD)
	}
	reqs := generations(fake)
	if len(reqs) != 1 || reqs[0].Path != "/v1/ideogram-v3/inpaint" {
		t.Fatalf("requests %+v; want one POST /v1/ideogram-v3/inpaint", reqs)
	}
	form, err := providertest.IdeogramForm(reqs[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"aspect_ratio", "resolution", "negative_prompt"} {
		if _, ok := form.Value[k]; ok {
			t.Errorf("inpaint request carries %s; the endpoint does not take it", k)
		}
	}
	if got := readPart(t, form.File["image"][0]); !bytes.Equal(got, src) {
		t.Error("image part is not the source image")
	}
	if len(form.File["character_reference_images"]) != 1 {
		t.Error("inpaint request lost the character reference")
	}
	maskPart := form.File["mask"][0]
	if ct := maskPart.Header.Get("Content-Type"); ct != "image/png" {
		t.Errorf("mask content type %q; want image/png", ct)
	}
	m, err := png.Decode(bytes.NewReader(readPart(t, maskPart)))
	if err != nil {
		t.Fatal(err)
	}
	if b := m.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Fatalf("mask is %dx%d; want %dx%d", b.Dx(), b.Dy(), w, h)
	}
	gray := func(x, y int) uint8 { return color.GrayModel.Convert(m.At(x, y)).(color.Gray).Y }
	checks := []struct {
		x, y int
		want uint8
		why  string
	}{
		{0, 0, 255, "neutral black (keep) becomes white"},
		{w - 1, h - 1, 0, "neutral white (repaint) becomes black"},
		{2, 2, 255, "near-black noise stays kept"},
		{3, 3, 0, "mid grey is non-black, so it is repainted"},
	}
	for _, c := range checks {
		if got := gray(c.x, c.y); got != c.want {
			t.Errorf("mask(%d,%d) = %d; want %d: %s", c.x, c.y, got, c.want, c.why)
		}
	}
}

func TestInpaintInputErrors(t *testing.T) {
	t.Parallel()
	fake := providertest.NewIdeogram(t)
	c := newClient(t, fake.URL())
	src := providertest.PNG(32, 24, 1)
	tests := []struct {
		name string
		edit func(*provider.Request)
	}{
		{"image without mask", func(r *provider.Request) { r.Image = &provider.Image{Data: src} }},
		{"mask without image", func(r *provider.Request) { r.Mask = &provider.Image{Data: src} }},
		{"mask of another size", func(r *provider.Request) {
			r.Image = &provider.Image{Data: src}
			r.Mask = &provider.Image{Data: providertest.PNG(16, 16, 1)}
		}},
		{"mask not an image", func(r *provider.Request) {
			r.Image = &provider.Image{Data: src}
			r.Mask = &provider.Image{Data: []byte("nope")}
		}},
		{"unknown param", func(r *provider.Request) { r.Params = map[string]any{"speed": "fast"} }},
		{"bad enum value", func(r *provider.Request) { r.Params = map[string]any{"style_type": "Design"} }},
		{"unknown model", func(r *provider.Request) { r.Model = "ideogram-2" }},
		{"no reference bytes", func(r *provider.Request) { r.Reference = provider.Image{URL: "https://example.com/ref.png"} }},
		{"empty prompt", func(r *provider.Request) { r.Prompt = " " }},
	}
	for _, tt := range tests {
		req := request(nil)
		tt.edit(&req)
		_, err := c.Generate(context.Background(), req)
		if provider.ClassOf(err) != provider.Input {
			t.Errorf("%s: %v; want an input error", tt.name, err)
		}
	}
	if n := fake.Calls(); n != 0 {
		t.Errorf("%d requests reached Ideogram; bad input should be caught locally", n)
	}
}

func TestUnsafeOutputIsSafety(t *testing.T) {
	t.Parallel()
	fake := providertest.NewIdeogram(t)
	fake.Script(providertest.IdeogramUnsafeOutput)
	_, err := newClient(t, fake.URL()).Generate(context.Background(), request(map[string]any{"rendering_speed": "Quality"}))
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.Safety || !errors.Is(err, provider.ErrSafety) {
		t.Fatalf("withheld output: %v; want a safety error", err)
	}
	if pe.Code != "is_image_safe_false" || pe.RequestID == "" {
		t.Errorf("code %q, request id %q; want is_image_safe_false and an id", pe.Code, pe.RequestID)
	}
	if !strings.Contains(pe.Message, "billed at $0.20") {
		t.Errorf("message %q does not say the withheld image is billed", pe.Message)
	}
	for _, r := range fake.Requests() {
		if r.Method == http.MethodGet {
			t.Errorf("downloaded %s although no image was returned", r.Path)
		}
	}
}

func TestPaymentRequired(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		sc   providertest.Scenario
		code string
	}{{providertest.Billing, "insufficient_funds"}, {providertest.IdeogramDailyLimit, "daily_limit"}} {
		fake := providertest.NewIdeogram(t)
		fake.Script(tt.sc)
		_, err := newClient(t, fake.URL()).Generate(context.Background(), request(nil))
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Class != provider.Billing || pe.Status != 402 || pe.Code != tt.code {
			t.Errorf("%s: %v; want billing 402 with code %s", tt.sc, err, tt.code)
		}
	}
}

func TestInflightLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		sc   providertest.Scenario
		cfg  time.Duration
		want time.Duration
	}{
		{"Retry-After header", providertest.RateLimited, 0, providertest.RateWait},
		{"documented default", providertest.IdeogramInflightNoHint, 0, ideogram.DefaultRateLimitWait},
		{"configured default", providertest.IdeogramInflightNoHint, 3 * time.Second, 3 * time.Second},
	} {
		fake := providertest.NewIdeogram(t)
		fake.Script(tt.sc)
		c, err := ideogram.New(ideogram.Config{BaseURL: fake.URL(), APIKey: providertest.IdeogramKey, RateLimitWait: tt.cfg})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Generate(context.Background(), request(nil))
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Class != provider.Rate || pe.Code != "inflight_limit" || pe.RetryAfter != tt.want {
			t.Errorf("%s: %v; want rate, inflight_limit, retry after %s", tt.name, err, tt.want)
		}
		if fake.Calls() != 1 {
			t.Errorf("%s: %d calls; the adapter must not retry", tt.name, fake.Calls())
		}
	}
}

func TestResultDetails(t *testing.T) {
	t.Parallel()
	fake := providertest.NewIdeogram(t)
	c := newClient(t, fake.URL())
	res, err := c.Generate(context.Background(), request(map[string]any{"magic_prompt_option": "On"}))
	if err != nil {
		t.Fatal(err)
	}
	if res.Seed != 1234 {
		t.Errorf("seed %d; want the one Ideogram reports", res.Seed)
	}
	if !strings.HasPrefix(res.RevisedPrompt, "she is playing the piano,") {
		t.Errorf("revised prompt %q; want MagicPrompt's rewrite", res.RevisedPrompt)
	}
	if res.RequestID != "ideogram-1" {
		t.Errorf("request id %q; want the output's image id", res.RequestID)
	}
	if res.Image.ContentType != "image/png" || res.Latency <= 0 {
		t.Errorf("image type %q, latency %s", res.Image.ContentType, res.Latency)
	}
	res, err = c.Generate(context.Background(), request(map[string]any{"magic_prompt_option": "Off"}))
	if err != nil {
		t.Fatal(err)
	}
	if res.RevisedPrompt != "" {
		t.Errorf("revised prompt %q with MagicPrompt off; want none (unchanged)", res.RevisedPrompt)
	}
}

func readPart(t *testing.T, fh *multipart.FileHeader) []byte {
	t.Helper()
	f, err := fh.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ExampleClient_Generate() {
	client, err := ideogram.New(ideogram.Config{APIKey: os.Getenv("IDEOGRAM_API_KEY")})
	if err != nil {
		fmt.Println(err)
		return
	}
	ref, _ := os.ReadFile("refs/mara.png")
	res, err := client.Generate(context.Background(), provider.Request{
		Model:     "ideogram-3-character",
		Prompt:    "she is playing the piano",
		Reference: provider.Image{Data: ref},
		Seed:      42,
		Params:    map[string]any{"rendering_speed": "Turbo", "style_type": "Realistic", "aspect_ratio": "3:4"},
	})
	if err != nil {
		fmt.Println(provider.ClassOf(err), err)
		return
	}
	fmt.Println(res.RequestID, res.CostUSD, len(res.Image.Data))
}
