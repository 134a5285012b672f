// Package sim is the simulated provider behind the `sim:<profile>` models:
// no network, no API key, real images. It is NOT a generative model. It takes
// the character reference, crops and scales it to the requested frame, and
// applies a per-profile treatment (kontext: warm and painterly; ideogram:
// flat poster with a bold outline; seededit: cool pencil sketch; gpt-image:
// soft and high-key; flaky: noisy) plus a prompt- and seed-derived variation
// (a colour wash and a colour band keyed by the prompt; a slight zoom and
// translucent shapes chosen by the seed). Outputs therefore look like edits
// of the portrait and differ visibly by model, prompt and seed, while the
// same inputs always give the same bytes (on one platform: the scaling step
// uses floating point, which other architectures may round differently).
//
// The simulator also behaves like a provider: each call takes a simulated
// latency, and calls fail in the ways real providers fail (transient 5xx,
// safety rejections, blank frames) at configurable rates, so the worker's
// retries and output checks can be exercised end to end.
//
// It is used three ways: by the quickstart (`likeness run` on a spec naming
// sim:* models works on a fresh machine), by tests and benchmarks of the
// worker, and by `likeness sim-provider`, which serves the same renderer over
// Replicate's HTTP protocol. That server can wrap a Client, or call Render
// directly when it implements the failure behaviour itself.
//
// # Behaviour
//
// Every sim model accepts the parameters declared in the provider catalog.
// Parameters override the profile defaults:
//
//   - latency_ms: mean latency; the profile default is the catalog's
//     Model.Latency. The actual latency is the mean ±30%, drawn from
//     (seed, prompt, model), then multiplied by Config.LatencyScale.
//   - fail_rate: share of calls answered with a transient 503.
//   - blank_rate: share of outputs that are a uniform black frame of the
//     right size; the worker's output check must catch them.
//   - safety_rate: share of outputs rejected by a simulated safety filter.
//
// Profiles ideogram and gpt-image inpaint, like the models they stand for:
// a request with Image and Mask keeps the image's frame and its pixels under
// the mask's black, and paints the character, framed to the mask's white
// area, where the mask is white (see RenderEdit). The other profiles answer
// such a request with an Input error.
//
// The flaky profile defaults to fail_rate 0.15, blank_rate 0.10 and
// safety_rate 0.05; every other profile defaults to 0.
//
// Blank and safety outcomes are deterministic in (seed, prompt, model), as a
// real moderated output repeats for the same seed: only a retry with a new
// seed escapes them. Transient failures are drawn from (seed, prompt, model)
// and a per-Client call counter, so a retry of the same request (same seed)
// can succeed; which calls fail is therefore not reproducible across runs,
// while the share of failing calls is. The Client keeps no other state.
package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"image"
	_ "image/gif" // reference formats accepted by Generate
	"image/jpeg"
	"image/png"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
	_ "golang.org/x/image/webp" // reference formats accepted by Generate
)

// ProviderName is the provider part of the simulator's model references
// ("sim:kontext") and the Provider of the errors it returns.
const ProviderName = "sim"

// Config configures a Client. The zero value is usable.
type Config struct {
	// Sleep waits for the simulated latency. It must return early with
	// ctx.Err() when ctx is done. Default: a real timer that selects on
	// ctx.Done(). Tests inject one that returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// LatencyScale multiplies every simulated latency. Default (0): 1.
	// Benchmarks use small values such as 0.01; it must not be negative.
	LatencyScale float64
	// Variants, above 0, bounds the distinct outputs rendered per
	// (reference, profile, prompt, params): the seed counts modulo
	// Variants, and each output is rendered and encoded once and then
	// reused. For load tests that measure the pipeline around a provider
	// that costs nothing, where rendering would otherwise cost more than
	// what they measure. Default 0: every seed renders its own output.
	Variants int
}

// Client generates images with the simulated models. It is safe for
// concurrent use.
type Client struct {
	cfg      Config
	registry *provider.Registry
	// calls counts Generate calls; it feeds the transient-failure draw so a
	// retry of the same request can succeed.
	calls atomic.Uint64
	// png reuses the PNG encoder's compressor between calls.
	png png.Encoder
	// refs holds decoded references (every task of a character sends the
	// same bytes); outputs holds encoded outputs when Config.Variants is set.
	refs    memo[image.Image]
	outputs memo[[]byte]
}

// memo is a small concurrent cache, emptied when it fills.
type memo[V any] struct {
	mu sync.Mutex
	m  map[string]V
}

// memoEntries bounds a memo.
const memoEntries = 4096

func (c *memo[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[key]
	return v, ok
}

func (c *memo[V]) put(key string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= memoEntries {
		c.m = make(map[string]V)
	}
	c.m[key] = v
}

// decodeReference decodes reference bytes, once per distinct reference.
func (c *Client) decodeReference(data []byte) (image.Image, error) {
	if img, ok := c.refs.get(string(data)); ok {
		return img, nil
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	c.refs.put(string(data), img)
	return img, nil
}

// encoderPool lets png.Encoder reuse its buffers and compressor.
type encoderPool struct{ pool sync.Pool }

func (p *encoderPool) Get() *png.EncoderBuffer {
	b, _ := p.pool.Get().(*png.EncoderBuffer)
	return b
}

func (p *encoderPool) Put(b *png.EncoderBuffer) { p.pool.Put(b) }

// New returns a Client for cfg, with defaults applied to a copy.
func New(cfg Config) (*Client, error) {
	if cfg.LatencyScale < 0 || math.IsNaN(cfg.LatencyScale) || math.IsInf(cfg.LatencyScale, 0) {
		return nil, fmt.Errorf("sim: LatencyScale must be a finite number >= 0, got %v", cfg.LatencyScale)
	}
	if cfg.LatencyScale == 0 {
		cfg.LatencyScale = 1
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	return &Client{
		cfg:      cfg,
		registry: provider.DefaultRegistry(),
		png:      png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &encoderPool{}},
	}, nil
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Generate renders one output for req. req.Model is the profile name
// ("kontext", not "sim:kontext"); req.Reference.Data must hold the reference
// bytes (PNG, JPEG, WebP or GIF), since the simulator fetches nothing.
// req.Width and req.Height are ignored: the size and aspect_ratio params
// decide the frame.
//
// Errors are *provider.Error: Input for an unknown profile, a bad parameter
// or an undecodable reference (returned at once, without latency);
// Transient (status 503) and Safety (code "sim_safety") at the configured
// rates, after the latency. If ctx is done during the latency, Generate
// returns ctx's error wrapped.
func (c *Client) Generate(ctx context.Context, req provider.Request) (*provider.Result, error) {
	ref := ProviderName + ":" + req.Model
	model, err := c.registry.Resolve(ref, req.Params)
	if err != nil {
		code := "sim_invalid_param"
		if _, ok := c.registry.Lookup(ref); !ok {
			code = "sim_unknown_model"
			err = fmt.Errorf("unknown profile %q (known: %s)", req.Model, strings.Join(c.profiles(), ", "))
		}
		return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Status: http.StatusUnprocessableEntity, Code: code, Message: err.Error()}
	}
	b := behaviourFor(model, req.Params)
	if len(req.Reference.Data) == 0 {
		return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Status: http.StatusUnprocessableEntity, Code: "sim_invalid_reference", Message: "reference image bytes are required (the simulator fetches no URLs)"}
	}
	refImg, err := c.decodeReference(req.Reference.Data)
	if err != nil {
		return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Status: http.StatusUnprocessableEntity, Code: "sim_invalid_reference", Message: "cannot decode reference image", Err: err}
	}
	editImg, editMask, perr := decodeEdit(model, req)
	if perr != nil {
		return nil, perr
	}

	d := newDraws(req.Seed, req.Prompt, req.Model)
	call := c.calls.Add(1)
	requestID := "sim-" + d.requestID(call)
	latency := time.Duration(float64(b.latency) * (0.7 + 0.6*d.u("latency")) * c.cfg.LatencyScale)
	if err := c.cfg.Sleep(ctx, latency); err != nil {
		return nil, fmt.Errorf("sim %s: request %s: %w", req.Model, requestID, err)
	}

	if d.u("fail", call) < b.failRate {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: http.StatusServiceUnavailable, Code: "sim_unavailable", RequestID: requestID, Message: fmt.Sprintf("simulated transient failure (fail_rate %g)", b.failRate)}
	}
	if d.u("safety") < b.safetyRate {
		return nil, &provider.Error{Class: provider.Safety, Provider: ProviderName, Code: "sim_safety", RequestID: requestID, Message: fmt.Sprintf("output flagged by the simulated safety filter (safety_rate %g); try another seed", b.safetyRate)}
	}

	var out image.Image
	switch {
	case d.u("blank") < b.blankRate:
		w, h, err := frameSize(refImg.Bounds(), req.Params)
		if err != nil { // unreachable after Resolve; kept so a catalog change cannot panic
			return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Status: http.StatusUnprocessableEntity, Code: "sim_invalid_param", Message: err.Error()}
		}
		if editImg != nil {
			w, h = editImg.Bounds().Dx(), editImg.Bounds().Dy()
		}
		out = image.NewGray(image.Rect(0, 0, w, h)) // all zero: opaque black
	case editImg != nil:
		out, err = RenderEdit(refImg, editImg, editMask, req.Model, req.Prompt, req.Seed)
		if err != nil {
			return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Status: http.StatusUnprocessableEntity, Code: "sim_invalid_edit", Message: err.Error()}
		}
	default:
		var data []byte
		seed := req.Seed
		if c.cfg.Variants > 0 {
			seed %= int64(c.cfg.Variants)
			key := fmt.Sprintf("%s\x00%s\x00%d\x00%v\x00%v\x00%v\x00", req.Model, req.Prompt, seed,
				req.Params["size"], req.Params["aspect_ratio"], req.Params["output_format"]) + string(req.Reference.Data)
			if data, ok := c.outputs.get(key); ok {
				return c.result(data, requestID, model, req, latency), nil
			}
			defer func() {
				if data != nil {
					c.outputs.put(key, data)
				}
			}()
		}
		out, err = Render(refImg, req.Model, req.Prompt, seed, req.Params)
		if err != nil {
			return nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Status: http.StatusUnprocessableEntity, Code: "sim_invalid_param", Message: err.Error()}
		}
		if data, err = c.encode(out, req.Params); err != nil {
			return nil, fmt.Errorf("sim %s: encode output: %w", req.Model, err)
		}
		return c.result(data, requestID, model, req, latency), nil
	}
	data, err := c.encode(out, req.Params)
	if err != nil {
		return nil, fmt.Errorf("sim %s: encode output: %w", req.Model, err)
	}
	return c.result(data, requestID, model, req, latency), nil
}

func (c *Client) result(data []byte, requestID string, model provider.Model, req provider.Request, latency time.Duration) *provider.Result {
	return &provider.Result{
		Image:     provider.Image{Data: data, ContentType: http.DetectContentType(data)},
		RequestID: requestID,
		CostUSD:   model.Pricing.For(req.Params),
		Latency:   latency,
		Seed:      req.Seed,
	}
}

// decodeEdit decodes an inpainting request's image and mask, refusing them
// for a profile that does not inpaint, as the model it stands for would.
// Both are nil for a request without an edit.
func decodeEdit(model provider.Model, req provider.Request) (img, mask image.Image, perr *provider.Error) {
	if req.Image == nil && req.Mask == nil {
		return nil, nil, nil
	}
	bad := func(msg string, err error) (image.Image, image.Image, *provider.Error) {
		return nil, nil, &provider.Error{Class: provider.Input, Provider: ProviderName, Status: http.StatusUnprocessableEntity, Code: "sim_invalid_edit", Message: msg, Err: err}
	}
	switch {
	case !model.Inpainting:
		return bad(fmt.Sprintf("%s does not inpaint (sim:ideogram and sim:gpt-image do)", model.Ref), nil)
	case req.Image == nil || req.Mask == nil:
		return bad("an edit needs both an image and a mask", nil)
	}
	img, _, err := image.Decode(bytes.NewReader(req.Image.Data))
	if err != nil {
		return bad("cannot decode the image to edit (the simulator fetches no URLs)", err)
	}
	mask, _, err = image.Decode(bytes.NewReader(req.Mask.Data))
	if err != nil {
		return bad("cannot decode the mask", err)
	}
	if img.Bounds().Size() != mask.Bounds().Size() {
		return bad(fmt.Sprintf("the mask is %v but the image is %v", mask.Bounds().Size(), img.Bounds().Size()), nil)
	}
	return img, mask, nil
}

// profiles lists the simulator's profile names, for error messages.
func (c *Client) profiles() []string {
	var names []string
	for _, m := range c.registry.Models() {
		if m.Provider == ProviderName {
			names = append(names, m.Name)
		}
	}
	slices.Sort(names)
	return names
}

// behaviour is a profile's latency and failure rates after params.
type behaviour struct {
	latency                         time.Duration
	failRate, blankRate, safetyRate float64
}

func behaviourFor(m provider.Model, params map[string]any) behaviour {
	b := behaviour{latency: m.Latency}
	if m.Name == "flaky" {
		b.failRate, b.blankRate, b.safetyRate = 0.15, 0.10, 0.05
	}
	if v, ok := number(params["latency_ms"]); ok {
		b.latency = time.Duration(v * float64(time.Millisecond))
	}
	if v, ok := number(params["fail_rate"]); ok {
		b.failRate = v
	}
	if v, ok := number(params["blank_rate"]); ok {
		b.blankRate = v
	}
	if v, ok := number(params["safety_rate"]); ok {
		b.safetyRate = v
	}
	return b
}

// encode writes img as PNG, or as JPEG when params ask for "jpg".
func (c *Client) encode(img image.Image, params map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	if f, _ := params["output_format"].(string); f == "jpg" {
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90})
	} else {
		err = c.png.Encode(&buf, img)
	}
	return buf.Bytes(), err
}

// draws derives the deterministic random draws of one request from a hash
// of (seed, prompt, model).
type draws struct{ key [sha256.Size]byte }

func newDraws(seed int64, prompt, model string) draws {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	binary.BigEndian.PutUint64(b[:], uint64(len(model)))
	h.Write(b[:])
	h.Write([]byte(model))
	h.Write([]byte(prompt))
	var d draws
	h.Sum(d.key[:0])
	return d
}

// sum hashes the key with a label and optional counters.
func (d draws) sum(label string, extra ...uint64) [sha256.Size]byte {
	h := sha256.New()
	h.Write(d.key[:])
	h.Write([]byte(label))
	var b [8]byte
	for _, x := range extra {
		binary.BigEndian.PutUint64(b[:], x)
		h.Write(b[:])
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// u returns a uniform draw in [0, 1) for label.
func (d draws) u(label string, extra ...uint64) float64 {
	s := d.sum(label, extra...)
	return float64(binary.BigEndian.Uint64(s[:8])>>11) / (1 << 53)
}

// requestID is a short id unique per call of a Client.
func (d draws) requestID(call uint64) string {
	s := d.sum("request", call)
	return hex.EncodeToString(s[:8])
}

// number reads a numeric parameter as decoded from YAML or JSON.
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint:
		return float64(n), true
	case uint32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float32:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
