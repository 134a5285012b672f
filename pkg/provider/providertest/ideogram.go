package providertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // Ideogram upload format
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	_ "golang.org/x/image/webp" // Ideogram upload format
)

// Ideogram-only scenarios, played by IdeogramFake when scripted.
const (
	// IdeogramUnsafeOutput answers 200 with is_image_safe false and no URL:
	// the output was withheld, and Ideogram bills the request anyway.
	IdeogramUnsafeOutput Scenario = "ideogram_unsafe_output"
	// IdeogramDailyLimit answers 402 with reject_reason daily_limit.
	IdeogramDailyLimit Scenario = "ideogram_daily_limit"
	// IdeogramInflightNoHint answers the in-flight 429 without a
	// Retry-After header (the header is not guaranteed).
	IdeogramInflightNoHint Scenario = "ideogram_inflight_no_hint"
)

// IdeogramKey is the API key an IdeogramFake accepts by default.
const IdeogramKey = "ideogram-test-key-3c9a"

// Response bodies IdeogramFake plays, in Ideogram's shapes
// (shared/providers.md section 5). Tests may use them as recorded bodies.
const (
	IdeogramBodyInflight          = `{"error":"Too many requests in flight","reject_reason":"inflight_limit","max_inflight_requests":10,"task_completion_speed":"normal"}`
	IdeogramBodyInsufficientFunds = `{"error":"Insufficient funds to complete this request","reject_reason":"insufficient_funds"}`
	IdeogramBodyDailyLimit        = `{"error":"Daily spending limit reached","reject_reason":"daily_limit"}`
	IdeogramBodySafety            = `{"error":"Prompt or provided image failed the safety checks"}`
	IdeogramBodyUnauthorized      = `{"error":"Invalid API key"}`
	IdeogramBodyBadInput          = `{"error":"Invalid input: the requested resolution is not supported"}`
	IdeogramBodyServerError       = `{"error":"Internal server error"}`
)

// IdeogramFake speaks Ideogram's v1 API for Ideogram 3.0: the synchronous
// multipart generate endpoint with a character reference, and the inpaint
// endpoint (with its legacy alias /v1/ideogram-v3/edit). It checks the
// Api-Key header, every form field against Ideogram's enums, the reference
// upload (one JPEG/PNG/WebP part with an image content type, at most 10 MB)
// and, for inpainting, that image and mask have the same size. Outputs are
// small PNGs served from the fake's /files/ path.
type IdeogramFake struct {
	*Base
	// Key is the API key the fake accepts. Default IdeogramKey.
	Key string

	n atomic.Int64
}

// NewIdeogram starts an Ideogram fake on 127.0.0.1.
func NewIdeogram(t testing.TB) *IdeogramFake {
	t.Helper()
	f := &IdeogramFake{Base: NewBase(t), Key: IdeogramKey}
	f.Mux.HandleFunc("POST /v1/ideogram-v3/generate", f.generate)
	f.Mux.HandleFunc("POST /v1/ideogram-v3/inpaint", f.inpaint)
	f.Mux.HandleFunc("POST /v1/ideogram-v3/edit", f.inpaint)
	return f
}

// Supports reports every scenario but TaskFailed: Ideogram's v1 API is
// synchronous, so there is no task to fail.
func (f *IdeogramFake) Supports(s Scenario) bool { return s != TaskFailed }

// IdeogramForm parses the multipart body of a recorded request.
func IdeogramForm(r Request) (*multipart.Form, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, fmt.Errorf("content type %q is not multipart/form-data", r.Header.Get("Content-Type"))
	}
	return multipart.NewReader(bytes.NewReader(r.Body), params["boundary"]).ReadForm(64 << 20)
}

// ideogram3Enums are the allowed wire values of Ideogram 3.0's enum fields.
func ideogram3Enums(field string) []string {
	switch field {
	case "rendering_speed":
		return []string{"FLASH", "TURBO", "DEFAULT", "QUALITY"}
	case "style_type":
		return []string{"AUTO", "GENERAL", "REALISTIC", "DESIGN", "FICTION"}
	case "magic_prompt":
		return []string{"AUTO", "ON", "OFF"}
	case "aspect_ratio":
		return []string{"1x3", "3x1", "1x2", "2x1", "9x16", "16x9", "10x16", "16x10", "2x3", "3x2", "3x4", "4x3", "4x5", "5x4", "1x1"}
	}
	return nil
}

// ideogramFields are the fields each endpoint accepts.
func ideogramFields(inpaint bool) []string {
	common := []string{"prompt", "seed", "num_images", "rendering_speed", "magic_prompt", "style_type",
		"style_preset", "style_codes", "color_palette", "character_reference_images", "character_reference_images_mask",
		"style_reference_images"}
	if inpaint {
		return append(common, "image", "mask")
	}
	return append(common, "resolution", "aspect_ratio", "negative_prompt")
}

func (f *IdeogramFake) generate(w http.ResponseWriter, r *http.Request) { f.serve(w, r, false) }
func (f *IdeogramFake) inpaint(w http.ResponseWriter, r *http.Request)  { f.serve(w, r, true) }

func (f *IdeogramFake) serve(w http.ResponseWriter, r *http.Request, inpaint bool) {
	if r.Header.Get("Authorization") != "" {
		ProtocolError(w, "Ideogram authenticates with the Api-Key header, not Authorization")
		return
	}
	if r.Header.Get("Api-Key") == "" {
		ProtocolError(w, "missing Api-Key header")
		return
	}
	form, err := ideogramParse(r)
	if err != nil {
		ProtocolError(w, "%v", err)
		return
	}
	width, height, err := ideogramCheck(form, inpaint)
	if err != nil {
		ProtocolError(w, "%v", err)
		return
	}
	sc := f.Next()
	if r.Header.Get("Api-Key") != f.Key {
		sc = Unauthorized
	}
	switch sc {
	case OK, OutputExpired:
		f.answer(w, form, width, height, sc == OutputExpired, true)
	case IdeogramUnsafeOutput:
		f.answer(w, form, width, height, false, false)
	case RateLimited:
		w.Header().Set("Retry-After", strconv.Itoa(int(RateWait.Seconds())))
		ideogramJSON(w, http.StatusTooManyRequests, IdeogramBodyInflight)
	case IdeogramInflightNoHint:
		ideogramJSON(w, http.StatusTooManyRequests, IdeogramBodyInflight)
	case ServerError:
		ideogramJSON(w, http.StatusInternalServerError, IdeogramBodyServerError)
	case Moderated:
		ideogramJSON(w, http.StatusUnprocessableEntity, IdeogramBodySafety)
	case Billing:
		ideogramJSON(w, http.StatusPaymentRequired, IdeogramBodyInsufficientFunds)
	case IdeogramDailyLimit:
		ideogramJSON(w, http.StatusPaymentRequired, IdeogramBodyDailyLimit)
	case Unauthorized:
		ideogramJSON(w, http.StatusUnauthorized, IdeogramBodyUnauthorized)
	case BadInput:
		ideogramJSON(w, http.StatusBadRequest, IdeogramBodyBadInput)
	case Malformed:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<html><body>upstream hiccup</body></html>"))
	case Slow:
		Hold(w, r)
	default:
		ProtocolError(w, "ideogram has no %s scenario", sc)
	}
}

func ideogramParse(r *http.Request) (*multipart.Form, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return nil, fmt.Errorf("content type %q; want multipart/form-data", r.Header.Get("Content-Type"))
	}
	form, err := multipart.NewReader(r.Body, params["boundary"]).ReadForm(64 << 20)
	if err != nil {
		return nil, fmt.Errorf("unreadable multipart body: %v", err)
	}
	return form, nil
}

// ideogramCheck validates a form the way Ideogram does and returns the
// output size the fake renders (scaled down from the real one).
func ideogramCheck(form *multipart.Form, inpaint bool) (int, int, error) {
	allowed := ideogramFields(inpaint)
	for name := range form.Value {
		if !slices.Contains(allowed, name) {
			return 0, 0, fmt.Errorf("unknown or misplaced field %q", name)
		}
	}
	for name := range form.File {
		if !slices.Contains(allowed, name) {
			return 0, 0, fmt.Errorf("unknown or misplaced file field %q", name)
		}
	}
	value := func(name string) (string, bool) {
		v := form.Value[name]
		if len(v) == 0 {
			return "", false
		}
		return v[0], true
	}
	for name, vs := range form.Value {
		if len(vs) > 1 && name != "style_codes" {
			return 0, 0, fmt.Errorf("field %q sent %d times", name, len(vs))
		}
		if enum := ideogram3Enums(name); enum != nil && !slices.Contains(enum, vs[0]) {
			return 0, 0, fmt.Errorf("%s %q is not one of %v", name, vs[0], enum)
		}
	}
	if p, _ := value("prompt"); strings.TrimSpace(p) == "" {
		return 0, 0, errors.New("prompt is required")
	}
	if s, ok := value("seed"); ok {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || n > 2147483647 {
			return 0, 0, fmt.Errorf("seed %q is not an integer in 0..2147483647", s)
		}
	}
	if s, ok := value("num_images"); ok {
		if n, err := strconv.Atoi(s); err != nil || n < 1 || n > 8 {
			return 0, 0, fmt.Errorf("num_images %q is not in 1..8", s)
		}
	}

	refs := form.File["character_reference_images"]
	if len(refs) != 1 {
		return 0, 0, fmt.Errorf("want exactly one character_reference_images file, got %d", len(refs))
	}
	_, rw, rh, err := ideogramUpload(refs[0], 10<<20)
	if err != nil {
		return 0, 0, fmt.Errorf("character_reference_images: %v", err)
	}
	if masks := form.File["character_reference_images_mask"]; len(masks) > 0 {
		if len(masks) != len(refs) {
			return 0, 0, errors.New("character_reference_images_mask count differs from the reference count")
		}
		if _, mw, mh, err := ideogramUpload(masks[0], 10<<20); err != nil || mw != rw || mh != rh {
			return 0, 0, errors.New("character_reference_images_mask must be an image the size of the reference")
		}
	}
	// With a character reference Ideogram needs a style_type, and only
	// these three; FLASH is not offered.
	if st, ok := value("style_type"); !ok || !slices.Contains([]string{"AUTO", "REALISTIC", "FICTION"}, st) {
		return 0, 0, fmt.Errorf("style_type %q: with a character reference it must be AUTO, REALISTIC or FICTION", st)
	}
	if sp, _ := value("rendering_speed"); sp == "FLASH" {
		return 0, 0, errors.New("rendering_speed FLASH cannot be used with a character reference")
	}

	if inpaint {
		imgs, masks := form.File["image"], form.File["mask"]
		if len(imgs) != 1 || len(masks) != 1 {
			return 0, 0, errors.New("inpainting needs one image and one mask file")
		}
		_, iw, ih, err := ideogramUpload(imgs[0], 10<<20)
		if err != nil {
			return 0, 0, fmt.Errorf("image: %v", err)
		}
		_, mw, mh, err := ideogramUpload(masks[0], 10<<20)
		if err != nil {
			return 0, 0, fmt.Errorf("mask: %v", err)
		}
		if mw != iw || mh != ih {
			return 0, 0, fmt.Errorf("mask is %dx%d but image is %dx%d", mw, mh, iw, ih)
		}
		return iw, ih, nil
	}

	res, hasRes := value("resolution")
	ar, hasAR := value("aspect_ratio")
	switch {
	case hasRes && hasAR:
		return 0, 0, errors.New("resolution and aspect_ratio cannot both be set")
	case hasRes:
		var w, h int
		if _, err := fmt.Sscanf(res, "%dx%d", &w, &h); err != nil || w < 512 || h < 512 || w > 1536 || h > 1536 || w%16 != 0 || h%16 != 0 {
			return 0, 0, fmt.Errorf("resolution %q is not an Ideogram 3.0 resolution", res)
		}
		return w / 16, h / 16, nil
	case hasAR:
		var a, b int
		_, _ = fmt.Sscanf(ar, "%dx%d", &a, &b)
		if a >= b {
			return 96, 96 * b / a, nil
		}
		return 96 * a / b, 96, nil
	}
	return 64, 64, nil
}

// ideogramUpload checks one uploaded image: an image content type, a size
// cap, and bytes that decode.
func ideogramUpload(fh *multipart.FileHeader, limit int64) ([]byte, int, int, error) {
	ct := fh.Header.Get("Content-Type")
	if !slices.Contains([]string{"image/jpeg", "image/png", "image/webp"}, ct) {
		return nil, 0, 0, fmt.Errorf("content type %q; Ideogram takes image/jpeg, image/png or image/webp", ct)
	}
	if fh.Size > limit {
		return nil, 0, 0, fmt.Errorf("%d bytes is over the %d byte limit", fh.Size, limit)
	}
	file, err := fh.Open()
	if err != nil {
		return nil, 0, 0, err
	}
	defer file.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(file)
	cfg, _, err := image.DecodeConfig(bytes.NewReader(buf.Bytes()))
	if err != nil {
		return nil, 0, 0, errors.New("not a decodable image")
	}
	if got := http.DetectContentType(buf.Bytes()); got != ct {
		return nil, 0, 0, fmt.Errorf("declared %s but the bytes are %s", ct, got)
	}
	return buf.Bytes(), cfg.Width, cfg.Height, nil
}

// answer plays a 200: a hosted image (expired when asked), or a withheld
// one when safe is false. MagicPrompt (anything but OFF) rewrites the prompt.
func (f *IdeogramFake) answer(w http.ResponseWriter, form *multipart.Form, width, height int, expired, safe bool) {
	seed := int64(42)
	if s := form.Value["seed"]; len(s) > 0 {
		seed, _ = strconv.ParseInt(s[0], 10, 64)
	}
	prompt := form.Value["prompt"][0]
	if mp := form.Value["magic_prompt"]; len(mp) == 0 || mp[0] != "OFF" {
		prompt += ", cinematic lighting, detailed illustration"
	}
	style := "AUTO"
	if st := form.Value["style_type"]; len(st) > 0 {
		style = st[0]
	}
	n := f.n.Add(1)
	link := ""
	if safe {
		link = f.Host(fmt.Sprintf("ideogram-%d.png", n), PNG(width, height, seed), expired) + "?exp=1760000000&signature=fake"
	}
	body, _ := json.Marshal(map[string]any{
		"created": "2025-09-04T12:00:00.000000+00:00",
		"data": []map[string]any{{
			"url": link, "prompt": prompt, "resolution": fmt.Sprintf("%dx%d", width*16, height*16),
			"is_image_safe": safe, "seed": seed, "style_type": style,
		}},
	})
	ideogramJSON(w, http.StatusOK, string(body))
}

func ideogramJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
