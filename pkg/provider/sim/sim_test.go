package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/likeness-run/likeness/pkg/imagecheck"
	"github.com/likeness-run/likeness/pkg/provider"
)

func request(ref []byte) provider.Request {
	return provider.Request{
		Model:     "kontext",
		Prompt:    "she is playing the piano",
		Reference: provider.Image{Data: ref, ContentType: "image/png"},
		Seed:      42,
		Params:    map[string]any{"aspect_ratio": "3:4"},
	}
}

func generate(t *testing.T, c *Client, req provider.Request) (*provider.Result, image.Image) {
	t.Helper()
	res, err := c.Generate(context.Background(), req)
	if err != nil {
		t.Fatalf("Generate(%s, %q, seed %d): %v", req.Model, req.Prompt, req.Seed, err)
	}
	img, _, err := image.Decode(bytes.NewReader(res.Image.Data))
	if err != nil {
		t.Fatalf("decode output: %v", err)
	}
	return res, img
}

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	c, ref := setup(t)
	other, err := New(Config{Sleep: instant})
	if err != nil {
		t.Fatal(err)
	}
	for _, profile := range []string{"kontext", "ideogram", "seededit", "gpt-image", "flaky"} {
		t.Run(profile, func(t *testing.T) {
			t.Parallel()
			req := request(ref)
			req.Model = profile
			req.Params = map[string]any{"aspect_ratio": "3:4", "fail_rate": 0, "blank_rate": 0, "safety_rate": 0}
			a, _ := generate(t, c, req)
			b, _ := generate(t, other, req)
			if !bytes.Equal(a.Image.Data, b.Image.Data) {
				t.Errorf("same request gave different bytes (%d vs %d bytes)", len(a.Image.Data), len(b.Image.Data))
			}
		})
	}
}

func TestGenerateVaries(t *testing.T) {
	t.Parallel()
	c, ref := setup(t)
	_, base := generate(t, c, request(ref))
	tests := []struct {
		name   string
		change func(*provider.Request)
	}{
		{"prompt", func(r *provider.Request) { r.Prompt = "restyle this person as anime" }},
		{"similar prompt", func(r *provider.Request) { r.Prompt += "." }},
		{"seed", func(r *provider.Request) { r.Seed = 43 }},
		{"profile ideogram", func(r *provider.Request) { r.Model = "ideogram" }},
		{"profile seededit", func(r *provider.Request) { r.Model = "seededit" }},
		{"profile gpt-image", func(r *provider.Request) { r.Model = "gpt-image" }},
		{"profile flaky", func(r *provider.Request) {
			r.Model = "flaky"
			r.Params = map[string]any{"aspect_ratio": "3:4", "fail_rate": 0, "blank_rate": 0, "safety_rate": 0}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := request(ref)
			tt.change(&req)
			_, img := generate(t, c, req)
			// 4/255 per channel on average is far above encoding noise and
			// well below what the eye notices side by side.
			d := meanDiff(t, base, img)
			t.Logf("%s: mean difference %.2f", tt.name, d)
			if d < 4 {
				t.Errorf("mean difference from the base output = %.2f/255, want >= 4", d)
			}
		})
	}
}

func TestGenerateSize(t *testing.T) {
	t.Parallel()
	c, ref := setup(t) // the reference is 300×400
	tests := []struct {
		params      map[string]any
		w, h        int
		contentType string
	}{
		{nil, 512, 512, "image/png"},
		{map[string]any{"aspect_ratio": "1:1", "size": 256}, 256, 256, "image/png"},
		{map[string]any{"aspect_ratio": "3:4"}, 384, 512, "image/png"},
		{map[string]any{"aspect_ratio": "4:3", "size": 1024}, 1024, 768, "image/png"},
		{map[string]any{"aspect_ratio": "2:3", "size": 100}, 67, 100, "image/png"},
		{map[string]any{"aspect_ratio": "3:2", "size": int64(64)}, 64, 43, "image/png"},
		{map[string]any{"aspect_ratio": "9:16", "size": float64(640)}, 360, 640, "image/png"},
		{map[string]any{"aspect_ratio": "16:9", "output_format": "jpg"}, 512, 288, "image/jpeg"},
		{map[string]any{"aspect_ratio": "match_input_image", "size": 800}, 600, 800, "image/png"},
		{map[string]any{"aspect_ratio": "match_input_image", "output_format": "png"}, 384, 512, "image/png"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.params), func(t *testing.T) {
			t.Parallel()
			req := request(ref)
			req.Model = "seededit"
			req.Params = tt.params
			res, _ := generate(t, c, req)
			if res.Image.ContentType != tt.contentType {
				t.Errorf("ContentType = %q, want %q", res.Image.ContentType, tt.contentType)
			}
			want := imagecheck.Want{Width: tt.w, Height: tt.h}
			if s, _ := tt.params["aspect_ratio"].(string); s != "" {
				want.AspectRatio, _ = imagecheck.ParseAspect(s)
			}
			if _, err := imagecheck.Verify(res.Image.Data, want, imagecheck.Default()...); err != nil {
				t.Errorf("output fails the worker's checks: %v", err)
			}
		})
	}
}

func TestGenerateResult(t *testing.T) {
	t.Parallel()
	c, ref := setup(t)
	req := request(ref)
	req.Model = "ideogram"
	a, _ := generate(t, c, req)
	b, _ := generate(t, c, req)
	model, _ := provider.DefaultRegistry().Lookup("sim:ideogram")
	got := struct {
		Cost        float64
		Seed        int64
		ContentType string
		Prefix      bool
	}{a.CostUSD, a.Seed, a.Image.ContentType, strings.HasPrefix(a.RequestID, "sim-")}
	want := struct {
		Cost        float64
		Seed        int64
		ContentType string
		Prefix      bool
	}{model.Pricing.For(req.Params), 42, "image/png", true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("result mismatch (-want +got):\n%s", diff)
	}
	if a.RequestID == b.RequestID {
		t.Errorf("two calls share request id %q", a.RequestID)
	}
}

func TestGenerateReferenceFormats(t *testing.T) {
	t.Parallel()
	c, _ := setup(t)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, portrait(120, 160), nil); err != nil {
		t.Fatal(err)
	}
	req := request(buf.Bytes())
	req.Params = map[string]any{"aspect_ratio": "match_input_image", "size": 160}
	_, img := generate(t, c, req)
	if got, want := img.Bounds().Size(), image.Pt(120, 160); got != want {
		t.Errorf("size = %v, want %v", got, want)
	}
}

func TestGenerateFailureModes(t *testing.T) {
	t.Parallel()
	c, ref := setup(t)

	t.Run("blank_rate 1 gives a black frame the output check rejects", func(t *testing.T) {
		t.Parallel()
		req := request(ref)
		req.Params = map[string]any{"aspect_ratio": "3:4", "blank_rate": 1.0}
		res, img := generate(t, c, req)
		if got, want := img.Bounds().Size(), image.Pt(384, 512); got != want {
			t.Errorf("blank size = %v, want %v", got, want)
		}
		for y := 0; y < 512; y += 7 {
			for x := 0; x < 384; x += 7 {
				if r, g, b, a := img.At(x, y).RGBA(); r|g|b != 0 || a != 0xffff {
					t.Fatalf("pixel (%d,%d) = %v, want opaque black", x, y, img.At(x, y))
				}
			}
		}
		_, err := imagecheck.Verify(res.Image.Data, imagecheck.Want{}, imagecheck.Default()...)
		var f *imagecheck.Failure
		if !errors.As(err, &f) || f.Check != "not_blank" {
			t.Errorf("Verify(blank) = %v, want a not_blank failure", err)
		}
	})

	t.Run("safety_rate 1", func(t *testing.T) {
		t.Parallel()
		req := request(ref)
		req.Params = map[string]any{"safety_rate": 1}
		_, err := c.Generate(context.Background(), req)
		var pe *provider.Error
		if !errors.Is(err, provider.ErrSafety) || !errors.As(err, &pe) || pe.Code != "sim_safety" || pe.Provider != "sim" {
			t.Errorf("Generate = %v, want a sim_safety Safety error", err)
		}
	})

	t.Run("fail_rate 1", func(t *testing.T) {
		t.Parallel()
		req := request(ref)
		req.Params = map[string]any{"fail_rate": 1}
		_, err := c.Generate(context.Background(), req)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Class != provider.Transient || pe.Status != 503 || pe.RequestID == "" {
			t.Errorf("Generate = %v, want a Transient 503 with a request id", err)
		}
	})
}

// TestFlakyRetries checks the retry semantics the worker relies on: a
// transient failure clears when the same request is retried, a safety
// rejection or blank frame repeats for the same seed and clears with
// another seed.
func TestFlakyRetries(t *testing.T) {
	t.Parallel()
	c, _ := setup(t)
	req := request(encodePNG(t, portrait(48, 64))) // small: many calls, and the race detector is slow
	req.Params = map[string]any{"size": 64, "fail_rate": 0.5}
	recovered := false
	for range 30 {
		if _, err := c.Generate(context.Background(), req); err == nil {
			recovered = true
			break
		}
	}
	if !recovered {
		t.Error("fail_rate 0.5: 30 retries with the same seed all failed")
	}

	req.Params = map[string]any{"size": 64, "safety_rate": 0.5}
	outcome := func(seed int64) bool {
		req.Seed = seed
		_, err := c.Generate(context.Background(), req)
		return errors.Is(err, provider.ErrSafety)
	}
	var flagged, passed bool
	for seed := range int64(40) {
		first := outcome(seed)
		for range 3 {
			if outcome(seed) != first {
				t.Fatalf("seed %d: safety outcome changed between identical calls", seed)
			}
		}
		flagged, passed = flagged || first, passed || !first
	}
	if !flagged || !passed {
		t.Errorf("safety_rate 0.5 over 40 seeds: flagged=%v passed=%v, want both", flagged, passed)
	}
}

func TestFlakyDefaults(t *testing.T) {
	t.Parallel()
	c, _ := setup(t)
	req := request(encodePNG(t, portrait(48, 64))) // small: many calls, and the race detector is slow
	req.Model = "flaky"
	req.Params = map[string]any{"size": 64}
	counts := map[string]int{}
	const n = 300 // a fresh Client and sequential calls: the counts are deterministic
	for seed := range int64(n) {
		req.Seed = seed
		res, err := c.Generate(context.Background(), req)
		switch {
		case err != nil:
			counts[string(provider.ClassOf(err))]++
		default:
			_, err := imagecheck.Verify(res.Image.Data, imagecheck.Want{}, imagecheck.NotBlank{})
			if err != nil {
				counts["blank"]++
			} else {
				counts["ok"]++
			}
		}
	}
	// Expected shares: 15% transient; of the rest 5% safety; of the rest 10% blank.
	for _, tt := range []struct {
		outcome  string
		min, max int
	}{
		{"transient", n * 9 / 100, n * 21 / 100},
		{"safety", n * 1 / 100, n * 8 / 100},
		{"blank", n * 4 / 100, n * 13 / 100},
		{"ok", n * 60 / 100, n * 80 / 100},
	} {
		if got := counts[tt.outcome]; got < tt.min || got > tt.max {
			t.Errorf("%s: %d of %d, want %d..%d (all: %v)", tt.outcome, got, n, tt.min, tt.max, counts)
		}
	}
}

func TestGenerateLatency(t *testing.T) {
	t.Parallel()
	ref := encodePNG(t, portrait(48, 64))
	tests := []struct {
		name   string
		scale  float64
		params map[string]any
		mean   time.Duration
	}{
		{"profile default", 0, map[string]any{"size": 64}, 300 * time.Millisecond},
		{"latency_ms", 0, map[string]any{"size": 64, "latency_ms": 1000}, time.Second},
		{"scaled", 0.01, map[string]any{"size": 64, "latency_ms": 1000}, 10 * time.Millisecond},
		{"zero", 0, map[string]any{"size": 64, "latency_ms": 0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var slept []time.Duration
			c, err := New(Config{LatencyScale: tt.scale, Sleep: func(ctx context.Context, d time.Duration) error {
				mu.Lock()
				defer mu.Unlock()
				slept = append(slept, d)
				return nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			req := request(ref)
			req.Params = tt.params
			var distinct = map[time.Duration]bool{}
			for seed := range int64(10) {
				req.Seed = seed
				res, _ := generate(t, c, req)
				d := slept[len(slept)-1]
				if res.Latency != d {
					t.Errorf("Result.Latency = %v, slept %v", res.Latency, d)
				}
				lo, hi := tt.mean*7/10, tt.mean*13/10
				if d < lo || d > hi {
					t.Errorf("seed %d: latency %v outside %v..%v", seed, d, lo, hi)
				}
				distinct[d] = true
			}
			if tt.mean > 0 && len(distinct) < 5 {
				t.Errorf("latency barely varies across seeds: %v", slept)
			}
		})
	}
}

func TestGenerateHonoursContext(t *testing.T) {
	t.Parallel()
	_, ref := setup(t)
	c, err := New(Config{}) // the real sleep
	if err != nil {
		t.Fatal(err)
	}
	req := request(ref)
	req.Params = map[string]any{"latency_ms": 600000}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	_, err = c.Generate(ctx, req)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Generate = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Generate returned %v after cancel, want promptly", took)
	}
}

func TestGenerateInputErrors(t *testing.T) {
	t.Parallel()
	c, ref := setup(t)
	tests := []struct {
		name   string
		change func(*provider.Request)
		code   string
	}{
		{"unknown profile", func(r *provider.Request) { r.Model = "dall-e" }, "sim_unknown_model"},
		{"full model ref", func(r *provider.Request) { r.Model = "sim:kontext" }, "sim_unknown_model"},
		{"size too small", func(r *provider.Request) { r.Params = map[string]any{"size": 10} }, "sim_invalid_param"},
		{"bad aspect", func(r *provider.Request) { r.Params = map[string]any{"aspect_ratio": "5:4"} }, "sim_invalid_param"},
		{"unknown param", func(r *provider.Request) { r.Params = map[string]any{"steps": 4} }, "sim_invalid_param"},
		{"no reference", func(r *provider.Request) { r.Reference = provider.Image{URL: "https://example.com/a.png"} }, "sim_invalid_reference"},
		{"undecodable reference", func(r *provider.Request) { r.Reference.Data = []byte("not an image") }, "sim_invalid_reference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := request(ref)
			tt.change(&req)
			_, err := c.Generate(context.Background(), req)
			var pe *provider.Error
			if !errors.Is(err, provider.ErrInput) || !errors.As(err, &pe) || pe.Code != tt.code {
				t.Errorf("Generate = %v, want Input error with code %s", err, tt.code)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{LatencyScale: -1}); err == nil {
		t.Error("New(LatencyScale -1) succeeded, want an error")
	}
}

func TestRenderErrors(t *testing.T) {
	t.Parallel()
	ref := portrait(30, 40)
	tests := []struct {
		name    string
		ref     image.Image
		profile string
		params  map[string]any
	}{
		{"nil reference", nil, "kontext", nil},
		{"empty reference", image.NewRGBA(image.Rectangle{}), "kontext", nil},
		{"unknown profile", ref, "midjourney", nil},
		{"size is a string", ref, "kontext", map[string]any{"size": "512"}},
		{"size too large", ref, "kontext", map[string]any{"size": 4096}},
		{"aspect not allowed", ref, "kontext", map[string]any{"aspect_ratio": "1:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Render(tt.ref, tt.profile, "p", 1, tt.params); err == nil {
				t.Error("Render succeeded, want an error")
			}
		})
	}
}

// BenchmarkRender512 renders a 512² output from a decoded 1024² JPEG
// reference, the common case of a phone photo cropped square.
func BenchmarkRender512(b *testing.B) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, portrait(1024, 1024), nil); err != nil {
		b.Fatal(err)
	}
	ref, _, err := image.Decode(&buf)
	if err != nil {
		b.Fatal(err)
	}
	for _, profile := range []string{"kontext", "ideogram", "seededit", "gpt-image", "flaky"} {
		b.Run(profile, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := Render(ref, profile, "she is playing the piano", int64(i), nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGenerate512 is a whole call without latency: decode a 1024²
// PNG reference, render, encode PNG.
func BenchmarkGenerate512(b *testing.B) {
	c, err := New(Config{Sleep: instant})
	if err != nil {
		b.Fatal(err)
	}
	req := request(encodePNG(b, portrait(1024, 1024)))
	req.Params = nil
	for i := 0; b.Loop(); i++ {
		req.Seed = int64(i)
		if _, err := c.Generate(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
