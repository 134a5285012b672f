package replicate_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
	"github.com/likeness-run/likeness/pkg/provider/replicate"
)

// openAIKey is the user's OpenAI key in tests; it must reach gpt-image-1's
// input and nothing else.
const openAIKey = "sk-proj-fakeOpenAIkey0123456789"

func newClient(t *testing.T, baseURL string, mods ...func(*replicate.Config)) *replicate.Client {
	t.Helper()
	cfg := replicate.Config{
		BaseURL: baseURL, APIKey: providertest.ReplicateToken, OpenAIKey: openAIKey,
		PollInterval: 10 * time.Millisecond,
	}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := replicate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// setup starts a fake and a client pointed at it.
func setup(t *testing.T, mods ...func(*replicate.Config)) (*providertest.ReplicateFake, *replicate.Client) {
	t.Helper()
	fake := providertest.NewReplicate(t)
	return fake, newClient(t, fake.URL(), mods...)
}

func request(model string, params map[string]any) provider.Request {
	ref := providertest.Reference()
	return provider.Request{
		Model: model, Prompt: "she is playing the piano", Character: "mara",
		Reference: provider.Image{Data: ref, ContentType: "image/png"},
		Seed:      1234, Params: params,
	}
}

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// creates returns the decoded inputs of every create request.
func creates(t *testing.T, reqs []providertest.Request) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range reqs {
		if r.Method == http.MethodPost && strings.HasSuffix(r.Path, "/predictions") {
			var body struct {
				Input map[string]any `json:"input"`
			}
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Fatalf("create body: %v", err)
			}
			out = append(out, body.Input)
		}
	}
	return out
}

func count(reqs []providertest.Request, method, pathPrefix string) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method && strings.HasPrefix(r.Path, pathPrefix) {
			n++
		}
	}
	return n
}

func TestConformance(t *testing.T) {
	t.Parallel()
	models := []struct {
		name   string
		params map[string]any
	}{
		{"black-forest-labs/flux-kontext-pro", map[string]any{"output_format": "png"}},
		{"black-forest-labs/flux-kontext-max", nil},
		{"black-forest-labs/flux-kontext-dev", map[string]any{"num_inference_steps": 28}},
		{"ideogram-ai/ideogram-character", map[string]any{"rendering_speed": "Turbo"}},
		{"runwayml/gen4-image", map[string]any{"resolution": "720p"}},
		{"runwayml/gen4-image-turbo", nil},
		{"bytedance/seededit-3.0", map[string]any{"guidance_scale": 5.5}},
		{"openai/gpt-image-1", map[string]any{"quality": "low"}},
	}
	for _, m := range models {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			providertest.Run(t, providertest.Harness{
				NewFake: func(t *testing.T) providertest.Fake { return providertest.NewReplicate(t) },
				NewGenerator: func(t *testing.T, baseURL string) provider.Generator {
					return newClient(t, baseURL)
				},
				Model: m.name, Params: m.params, Key: providertest.ReplicateToken, Provider: replicate.ProviderName,
				FetchesURLs: true,
			})
		})
	}
}

func TestGenerateAsync(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	res, err := c.Generate(ctxFor(t), request("black-forest-labs/flux-kontext-pro", map[string]any{"output_format": "png"}))
	if err != nil {
		t.Fatal(err)
	}
	reqs := fake.Requests()
	create := reqs[0]
	if create.Method != http.MethodPost || create.Path != "/models/black-forest-labs/flux-kontext-pro/predictions" {
		t.Errorf("create %s %s", create.Method, create.Path)
	}
	wantHeaders := map[string]string{
		"Authorization": "Bearer " + providertest.ReplicateToken,
		"Content-Type":  "application/json",
		"Prefer":        "wait=60",
		"Cancel-After":  "30m",
	}
	for k, v := range wantHeaders {
		if got := create.Header.Get(k); got != v {
			t.Errorf("create header %s = %q; want %q", k, got, v)
		}
	}
	in := creates(t, reqs)[0]
	ref, _ := in["input_image"].(string)
	if !strings.HasPrefix(ref, "data:image/png;base64,") {
		t.Errorf("input_image %.40q; want a data URL for a small reference", ref)
	}
	delete(in, "input_image")
	if diff := cmp.Diff(map[string]any{"prompt": "she is playing the piano", "seed": 1234.0, "output_format": "png"}, in); diff != "" {
		t.Errorf("input (-want +got):\n%s", diff)
	}
	// starting → processing → succeeded: two polls, on urls.get.
	if n := count(reqs, http.MethodGet, "/predictions/"+res.RequestID); n != 2 {
		t.Errorf("%d polls of %s; want 2", n, res.RequestID)
	}
	if res.CostUSD != 0.04 {
		t.Errorf("cost %v; want 0.04", res.CostUSD)
	}
	if res.Seed != 1234 || !strings.Contains(res.Logs, "Using seed: 1234") {
		t.Errorf("seed %d, logs %q; want the seed parsed from the logs", res.Seed, res.Logs)
	}
	if res.Image.ContentType != "image/png" || res.Latency <= 0 {
		t.Errorf("image %s, latency %s", res.Image.ContentType, res.Latency)
	}
}

// In sync mode Replicate answers the create with the output as soon as the
// files exist, while the status still says "processing": that is done.
func TestGenerateSyncOutputWhileProcessing(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.Sync(true)
	res, err := c.Generate(ctxFor(t), request("bytedance/seededit-3.0", nil))
	if err != nil {
		t.Fatal(err)
	}
	if n := count(fake.Requests(), http.MethodGet, "/predictions/"); n != 0 {
		t.Errorf("%d polls; want none once the output is present", n)
	}
	if w, h, err := providertest.DecodeSize(res.Image.Data); err != nil || w != 64 || h != 48 {
		t.Errorf("output %dx%d %v; want the 64x48 data: URI output", w, h, err)
	}
	if res.CostUSD != 0.03 {
		t.Errorf("cost %v; want 0.03", res.CostUSD)
	}
}

func TestHeadersFromConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                string
		wait, cancelAfter   time.Duration
		prefer, cancelValue string
	}{
		{"defaults", 0, 0, "wait=60", "30m"},
		{"custom", 10 * time.Second, 90 * time.Minute, "wait=10", "1h30m"},
		{"subsecond rounds up", 1500 * time.Millisecond, 45*time.Second + time.Millisecond, "wait=2", "46s"},
		{"off", -1, -1, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake, c := setup(t, func(cfg *replicate.Config) { cfg.Wait, cfg.CancelAfter = tt.wait, tt.cancelAfter })
			if _, err := c.Generate(ctxFor(t), request("black-forest-labs/flux-kontext-dev", nil)); err != nil {
				t.Fatal(err)
			}
			h := fake.Requests()[0].Header
			if h.Get("Prefer") != tt.prefer || h.Get("Cancel-After") != tt.cancelValue {
				t.Errorf("Prefer %q, Cancel-After %q; want %q, %q", h.Get("Prefer"), h.Get("Cancel-After"), tt.prefer, tt.cancelValue)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]replicate.Config{
		"no key":             {},
		"bad base URL":       {APIKey: "k", BaseURL: "ftp://example.com"},
		"wait above 60s":     {APIKey: "k", Wait: 61 * time.Second},
		"cancel-after below": {APIKey: "k", CancelAfter: 2 * time.Second},
	} {
		if _, err := replicate.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestKontextSafetyToleranceClamp(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   any
		want float64
	}{{6, 2}, {6.0, 2}, {1, 1}} {
		fake, c := setup(t)
		// Params bypass the registry here, as a hand-built request would.
		if _, err := c.Generate(ctxFor(t), request("black-forest-labs/flux-kontext-max", map[string]any{"safety_tolerance": tt.in})); err != nil {
			t.Fatalf("safety_tolerance %v: %v", tt.in, err)
		}
		if got := creates(t, fake.Requests())[0]["safety_tolerance"]; got != tt.want {
			t.Errorf("safety_tolerance %v sent as %v; want %v", tt.in, got, tt.want)
		}
	}
}

// maskPNG is a black 64x64 mask (keep) with a white square (repaint).
func maskPNG() []byte {
	img := image.NewGray(image.Rect(0, 0, 64, 64))
	for y := 16; y < 32; y++ {
		for x := 16; x < 32; x++ {
			img.SetGray(x, y, color.Gray{Y: 255})
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

func TestIdeogramInpaintInvertsMask(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	req := request("ideogram-ai/ideogram-character", map[string]any{"rendering_speed": "Quality"})
	src := providertest.PNG(64, 64, 9)
	req.Image = &provider.Image{Data: src, ContentType: "image/png"}
	req.Mask = &provider.Image{Data: maskPNG(), ContentType: "image/png"}
	res, err := c.Generate(ctxFor(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.CostUSD != 0.20 {
		t.Errorf("cost %v; want 0.20 for Quality", res.CostUSD)
	}
	in := creates(t, fake.Requests())[0]
	if _, ok := in["character_reference_image"].(string); !ok {
		t.Error("no character_reference_image")
	}
	if img, _ := in["image"].(string); img != provider.DataURI(src) {
		t.Errorf("image %.40q; want the inpainting source", img)
	}
	uri, _ := in["mask"].(string)
	data, err := provider.DecodeDataURI(uri)
	if err != nil {
		t.Fatalf("mask: %v", err)
	}
	mask, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("mask: %v", err)
	}
	gray := func(x, y int) uint8 { return color.GrayModel.Convert(mask.At(x, y)).(color.Gray).Y }
	if g := gray(20, 20); g != 0 {
		t.Errorf("repaint area is %d; want black (Ideogram repaints black)", g)
	}
	if g := gray(5, 5); g != 255 {
		t.Errorf("keep area is %d; want white", g)
	}
}

func TestInpaintErrors(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	img := &provider.Image{Data: providertest.PNG(8, 8, 1)}
	noMask := request("ideogram-ai/ideogram-character", nil)
	noMask.Image = img
	kontext := request("black-forest-labs/flux-kontext-pro", nil)
	kontext.Image, kontext.Mask = img, img
	for name, req := range map[string]provider.Request{"no mask": noMask, "model without inpainting": kontext} {
		if _, err := c.Generate(ctxFor(t), req); provider.ClassOf(err) != provider.Input {
			t.Errorf("%s: %v; want an input error", name, err)
		}
	}
	if n := fake.Calls(); n != 0 {
		t.Errorf("%d creates; want none for invalid requests", n)
	}
}

func TestGPTImageKey(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	// A key set in the spec's params is ignored: only Config's is used.
	res, err := c.Generate(ctxFor(t), request("openai/gpt-image-1", map[string]any{"quality": "medium", "openai_api_key": "sk-from-spec"}))
	if err != nil {
		t.Fatal(err)
	}
	in := creates(t, fake.Requests())[0]
	refs, _ := in["input_images"].([]any)
	if len(refs) != 1 {
		t.Errorf("input_images %v; want the reference", refs)
	}
	delete(in, "input_images")
	want := map[string]any{
		"prompt": "she is playing the piano", "openai_api_key": openAIKey, "quality": "medium",
		"input_fidelity": "high", "number_of_images": 1.0,
	}
	if diff := cmp.Diff(want, in); diff != "" {
		t.Errorf("input (-want +got):\n%s", diff)
	}
	if res.CostUSD != 0.042 {
		t.Errorf("cost %v; want 0.042", res.CostUSD)
	}
	if strings.Contains(res.Logs, openAIKey) || strings.Contains(res.RevisedPrompt, openAIKey) {
		t.Error("the result carries the OpenAI key")
	}
	for _, r := range fake.Requests() {
		if strings.Contains(r.Path, openAIKey) || strings.Contains(r.Header.Get("Authorization"), openAIKey) {
			t.Errorf("%s %s carries the OpenAI key outside the input", r.Method, r.Path)
		}
	}

	// Failures never show the key, whatever the provider says.
	for _, sc := range []providertest.Scenario{providertest.BadInput, providertest.Moderated, providertest.Malformed} {
		fake.Script(sc)
		_, err := c.Generate(ctxFor(t), request("openai/gpt-image-1", nil))
		if err == nil || strings.Contains(err.Error(), openAIKey) {
			t.Errorf("%s: error %v; want a failure without the key", sc, err)
		}
	}
}

func TestGPTImageWithoutKey(t *testing.T) {
	t.Parallel()
	fake, c := setup(t, func(cfg *replicate.Config) { cfg.OpenAIKey = "" })
	_, err := c.Generate(ctxFor(t), request("openai/gpt-image-1", nil))
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.Billing || !strings.Contains(pe.Message, "OPENAI_API_KEY") {
		t.Fatalf("error %v; want a billing/config error naming OPENAI_API_KEY", err)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("%d requests; want none", n)
	}
}

func TestRunwayTag(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"mara":                      "mara",
		"Mara-Jane":                 "marajane",
		"mara_2":                    "mara2",
		"42":                        "ref42",
		"al":                        "alref",
		"":                          "ref",
		"Zoë":                       "zo" + "ref",
		"a-very-long-character-id1": "averylongcharac",
	} {
		if got := replicate.RunwayTag(in); got != want {
			t.Errorf("RunwayTag(%q) = %q; want %q", in, got, want)
		}
	}
	for _, tt := range []struct{ prompt, want string }{
		{"she is playing the piano", "she is playing the piano (@mara)"},
		{"@mara is playing the piano", "@mara is playing the piano"},
		{"a portrait of @mara.", "a portrait of @mara."},
		{"@maranda at the piano", "@maranda at the piano (@mara)"},
		{"@Mara at the piano ", "@Mara at the piano (@mara)"},
	} {
		if got := replicate.MentionTag(tt.prompt, "mara"); got != tt.want {
			t.Errorf("MentionTag(%q) = %q; want %q", tt.prompt, got, tt.want)
		}
	}
}

func TestRunwayRequest(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	req := request("runwayml/gen4-image", map[string]any{"resolution": "720p", "aspect_ratio": "1:1"})
	req.Character = "Mara-Jane"
	res, err := c.Generate(ctxFor(t), req)
	if err != nil {
		t.Fatal(err)
	}
	in := creates(t, fake.Requests())[0]
	if diff := cmp.Diff([]any{"marajane"}, in["reference_tags"]); diff != "" {
		t.Errorf("reference_tags (-want +got):\n%s", diff)
	}
	if in["prompt"] != "she is playing the piano (@marajane)" {
		t.Errorf("prompt %q", in["prompt"])
	}
	if res.CostUSD != 0.05 {
		t.Errorf("cost %v; want 0.05 at 720p", res.CostUSD)
	}
}

// bigPNG is a noisy PNG well above the 256 KiB data-URL limit.
func bigPNG() []byte {
	rng := rand.New(rand.NewSource(1))
	img := image.NewNRGBA(image.Rect(0, 0, 400, 400))
	rng.Read(img.Pix)
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = 255
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

func TestLargeReferenceUploadedOnce(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	big := bigPNG()
	if len(big) <= replicate.MaxDataURIBytes {
		t.Fatalf("test image is only %d bytes", len(big))
	}
	req := request("black-forest-labs/flux-kontext-pro", nil)
	req.Reference = provider.Image{Data: big, ContentType: "image/png"}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := c.Generate(ctxFor(t), req); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if _, err := c.Generate(ctxFor(t), req); err != nil {
		t.Fatal(err)
	}
	if n := fake.Uploads(); n != 1 {
		t.Errorf("%d uploads for three generations; want 1", n)
	}
	for _, r := range fake.Requests() {
		if r.Method == http.MethodPost && r.Path == "/files" {
			checkUpload(t, r, big)
		}
	}
	for i, in := range creates(t, fake.Requests()) {
		if got := in["input_image"]; got != fake.URL()+"/files/upload0001" {
			t.Errorf("create %d: input_image %.60v; want the upload's urls.get", i, got)
		}
	}
}

// checkUpload asserts the multipart shape of POST /files.
func checkUpload(t *testing.T, r providertest.Request, want []byte) {
	t.Helper()
	if r.Header.Get("Authorization") != "Bearer "+providertest.ReplicateToken {
		t.Error("upload without the token")
	}
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("upload content type %q", r.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(r.Body), params["boundary"])
	fields := map[string]string{}
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(p)
		if p.FormName() == "content" {
			if p.FileName() == "" || p.Header.Get("Content-Type") != "image/png" || !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("content part: filename %q, type %q, %d bytes", p.FileName(), p.Header.Get("Content-Type"), buf.Len())
			}
			continue
		}
		fields[p.FormName()] = buf.String()
	}
	if fields["type"] != "image/png" || !strings.HasSuffix(fields["filename"], ".png") {
		t.Errorf("upload fields %v", fields)
	}
}

func TestReferenceURLPassedThrough(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	req := request("bytedance/seededit-3.0", nil)
	req.Reference = provider.Image{Data: bigPNG(), URL: "https://bucket.example/refs/abc.png?X-Amz-Signature=1"}
	if _, err := c.Generate(ctxFor(t), req); err != nil {
		t.Fatal(err)
	}
	if got := creates(t, fake.Requests())[0]["image"]; got != req.Reference.URL {
		t.Errorf("image %v; want the reference URL", got)
	}
	if fake.Uploads() != 0 {
		t.Error("uploaded a reference that has a URL")
	}
}

func TestPollInterval(t *testing.T) {
	t.Parallel()
	const run, interval = 400 * time.Millisecond, 50 * time.Millisecond
	fake, c := setup(t, func(cfg *replicate.Config) { cfg.PollInterval = interval })
	fake.RunTime(run)
	began := time.Now()
	if _, err := c.Generate(ctxFor(t), request("black-forest-labs/flux-kontext-pro", nil)); err != nil {
		t.Fatal(err)
	}
	polls := count(fake.Requests(), http.MethodGet, "/predictions/")
	// At most one poll per interval over the run (plus the one that sees
	// the result); at 10 ms or with no pause there would be far more.
	if limit := int(run/interval) + 2; polls > limit || polls < 3 {
		t.Errorf("%d polls over %s at %s; want 3..%d", polls, time.Since(began).Round(time.Millisecond), interval, limit)
	}
}

func TestCancelOnContextEnd(t *testing.T) {
	t.Parallel()
	fake := providertest.NewReplicate(t)
	fake.RunTime(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The caller gives up after the second poll (no OnPending: nobody
	// recorded the prediction, so nobody will resume it).
	c := newClient(t, fake.URL(), func(cfg *replicate.Config) {
		cfg.HTTPClient = providertest.ClientThatDies(2, isPoll, cancel)
	})
	_, err := c.Generate(ctx, request("black-forest-labs/flux-kontext-pro", nil))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v; want the context's", err)
	}
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.RequestID == "" {
		t.Fatalf("error %v; want a *provider.Error with the prediction id", err)
	}
	if diff := cmp.Diff([]string{pe.RequestID}, fake.Canceled()); diff != "" {
		t.Errorf("canceled predictions (-want +got):\n%s", diff)
	}
	for _, r := range fake.Requests() {
		if strings.HasSuffix(r.Path, "/cancel") && r.Header.Get("Authorization") != "Bearer "+providertest.ReplicateToken {
			t.Error("cancel without the token")
		}
	}
}

func TestTags(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	tags, err := c.Tags(ctxFor(t), "Consistent characters, consistent models: generating characters at scale", 3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"consistent", "characters", "models"}, tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	r := fake.Requests()[0]
	if r.Path != "/models/intelligent-utilities/topic-tags/predictions" {
		t.Errorf("path %s", r.Path)
	}
	in := creates(t, fake.Requests())[0]
	if diff := cmp.Diff(map[string]any{"text": "Consistent characters, consistent models: generating characters at scale", "number_of_tags": 3.0}, in); diff != "" {
		t.Errorf("input (-want +got):\n%s", diff)
	}

	// Sync mode answers at once; failures are classified like Generate's.
	fake.Sync(true)
	if tags, err := c.Tags(ctxFor(t), "one two", 0); err != nil || len(tags) != 2 {
		t.Errorf("sync: %v, %v", tags, err)
	}
	fake.Script(providertest.RateLimited)
	if _, err := c.Tags(ctxFor(t), "one two", 2); provider.ClassOf(err) != provider.Rate {
		t.Errorf("rate limited: %v", err)
	}
	if _, err := c.Tags(ctxFor(t), "  ", 2); provider.ClassOf(err) != provider.Input {
		t.Errorf("empty text: %v", err)
	}
}

func TestGenerateRejectsModels(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	for _, model := range []string{"intelligent-utilities/topic-tags", "someone/unknown-model", "flux-kontext-pro"} {
		if _, err := c.Generate(ctxFor(t), request(model, nil)); provider.ClassOf(err) != provider.Input {
			t.Errorf("%s: %v; want an input error", model, err)
		}
	}
	if len(fake.Requests()) != 0 {
		t.Error("requests sent for rejected models")
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()
	reg := provider.DefaultRegistry()
	for _, m := range reg.Models() {
		if m.Provider != replicate.ProviderName {
			continue
		}
		for _, p := range m.Params {
			switch p.Name {
			case "prompt", "seed", "input_image", "image", "character_reference_image", "reference_images", "reference_tags", "input_images", "number_of_images":
				t.Errorf("%s lists %s, which likeness supplies", m.Ref, p.Name)
			}
			if p.Secret && p.Required {
				t.Errorf("%s: secret %s must not be required", m.Ref, p.Name)
			}
		}
		if m.Limits.Key != "replicate" {
			t.Errorf("%s: limit key %q", m.Ref, m.Limits.Key)
		}
	}
	m, ok := reg.Lookup("replicate:" + replicate.TagsModel)
	if !ok || m.Output != provider.OutputText {
		t.Errorf("topic-tags: %+v", m)
	}
	if _, err := reg.Resolve("replicate:black-forest-labs/flux-kontext-pro", map[string]any{"safety_tolerance": 3}); err == nil {
		t.Error("safety_tolerance 3 accepted; the reference makes 2 the maximum")
	}
	if m, _ := reg.Lookup("replicate:openai/gpt-image-1"); m.Output != provider.OutputURIArray {
		t.Errorf("gpt-image-1 output %q", m.Output)
	}
}

// pollServer answers create with "starting", then plays polls in order (the
// last one repeats), and counts cancels.
type pollServer struct {
	mu      sync.Mutex
	polls   []int // status code per poll; 200 means succeeded
	n       int
	cancels int
}

func (s *pollServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/cancel"):
		s.cancels++
		fmt.Fprint(w, `{"id":"p1","status":"canceled"}`)
	case r.Method == http.MethodPost:
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"id":"p1","status":"starting","output":null}`)
	default:
		code := s.polls[min(s.n, len(s.polls)-1)]
		s.n++
		if code != http.StatusOK {
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"detail":"poll failed","status":%d,"retry_after":0.01}`, code)
			return
		}
		fmt.Fprintf(w, `{"id":"p1","status":"succeeded","output":%q}`, provider.DataURI(providertest.PNG(8, 8, 1)))
	}
}

func TestPollErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		polls   []int
		class   provider.Class // "" = success
		cancels int
	}{
		// A blip while polling does not lose the prediction (and its cost).
		{"transient blips", []int{503, 429, 200}, "", 0},
		{"persistent 5xx", []int{502}, provider.Transient, 1},
		{"revoked token", []int{401}, provider.Billing, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &pollServer{polls: tt.polls}
			srv := httptest.NewServer(s)
			t.Cleanup(srv.Close)
			c := newClient(t, srv.URL, func(cfg *replicate.Config) { cfg.Wait = -1 })
			_, err := c.Generate(ctxFor(t), request("bytedance/seededit-3.0", nil))
			if provider.ClassOf(err) != tt.class {
				t.Fatalf("error %v; want class %q", err, tt.class)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.cancels != tt.cancels {
				t.Errorf("%d cancels; want %d", s.cancels, tt.cancels)
			}
		})
	}
}

// TestPollsFollowTheModelsPace: once the client has seen a model's
// predictions finish, it polls the next one when it should be done and
// little after, not every PollInterval: a few polls a prediction, each
// seen well before PollInterval has passed.
func TestPollsFollowTheModelsPace(t *testing.T) {
	t.Parallel()
	const run, interval = 300 * time.Millisecond, time.Second
	fake, c := setup(t, func(cfg *replicate.Config) { cfg.PollInterval = interval })
	fake.RunTime(run)
	for i := range 5 {
		before := count(fake.Requests(), http.MethodGet, "/predictions/")
		began := time.Now()
		if _, err := c.Generate(ctxFor(t), request("black-forest-labs/flux-kontext-pro", nil)); err != nil {
			t.Fatal(err)
		}
		took := time.Since(began)
		polls := count(fake.Requests(), http.MethodGet, "/predictions/") - before
		if i == 0 {
			continue // nothing seen yet: every PollInterval
		}
		// The fake needs two polls (starting, then processing) before it
		// reports an output; a third or fourth when the first comes early.
		if polls < 2 || polls > 4 {
			t.Errorf("prediction %d: %d polls; want 2..4", i+1, polls)
		}
		if took >= interval {
			t.Errorf("prediction %d seen after %s; want well under PollInterval %s", i+1, took.Round(time.Millisecond), interval)
		}
	}
}
