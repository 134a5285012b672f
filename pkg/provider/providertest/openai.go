package providertest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"image/png"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "golang.org/x/image/webp" // uploads may be WebP
)

// OpenAIKey is the API key an OpenAIFake accepts unless its Key is changed.
const OpenAIKey = "sk-proj-fake0123456789abcdefOPENAI"

// OpenAIFake speaks OpenAI's Images API for gpt-image-1
// (shared/providers.md section 2) under /v1: POST /v1/images/edits
// (multipart) and POST /v1/images/generations (JSON). Answers are
// synchronous with the image inline as base64, so outputs cannot expire and
// there is no task to fail: Supports reports false for OutputExpired and
// TaskFailed.
//
// It checks what the client sends and answers a protocol mistake with
// ProtocolError: the Bearer key (a wrong key gets OpenAI's 401), the path,
// a multipart/form-data content type with a boundary, the model, prompt and
// image[] parts, an image/png, image/jpeg or image/webp Content-Type on every
// image part (OpenAI rejects application/octet-stream) with bytes that
// decode, a mask (when sent) that is a PNG with an alpha channel and the
// size of the first image, enum values, and unknown fields (moderation is
// not accepted on edits, input_fidelity not on generations). A good request
// gets a PNG (JPEG when output_format is jpeg) of the requested size
// (1024x1024 for auto).
type OpenAIFake struct {
	*Base
	// Key is the accepted API key. Default OpenAIKey; set before the first
	// request.
	Key string

	ids    atomic.Int64
	mu     sync.Mutex
	images map[string][]byte // encoded outputs by size and format
}

// NewOpenAI starts an OpenAI Images fake; it is closed when the test ends.
func NewOpenAI(t testing.TB) *OpenAIFake {
	t.Helper()
	f := &OpenAIFake{Base: NewBase(t), Key: OpenAIKey, images: map[string][]byte{}}
	f.Mux.HandleFunc("POST /v1/images/edits", f.edits)
	f.Mux.HandleFunc("POST /v1/images/generations", f.generations)
	f.Mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		openaiError(w, "", http.StatusNotFound, fmt.Sprintf("Invalid URL (%s %s)", r.Method, r.URL.Path), "invalid_request_error", "", "")
	})
	return f
}

// URL is the API root to configure the adapter with, like
// https://api.openai.com/v1.
func (f *OpenAIFake) URL() string { return f.Base.URL() + "/v1" }

// Supports reports false for OutputExpired and TaskFailed: outputs are
// inline base64 and requests are synchronous.
func (f *OpenAIFake) Supports(s Scenario) bool {
	return s != OutputExpired && s != TaskFailed
}

var (
	openaiSizes      = []string{"auto", "1024x1024", "1536x1024", "1024x1536"}
	openaiQualities  = []string{"auto", "low", "medium", "high"}
	openaiFormats    = []string{"png", "jpeg", "webp"}
	openaiBackground = []string{"auto", "transparent", "opaque"}
	openaiEditFields = []string{"model", "prompt", "n", "size", "quality", "background", "output_format", "output_compression", "input_fidelity", "user", "stream", "partial_images"}
	openaiGenFields  = []string{"model", "prompt", "n", "size", "quality", "background", "output_format", "output_compression", "moderation", "user", "stream", "partial_images", "style", "response_format"}
	openaiImageTypes = []string{"image/png", "image/jpeg", "image/webp"}
)

func (f *OpenAIFake) authorized(w http.ResponseWriter, r *http.Request, id string) bool {
	key := BearerKey(r)
	if key == f.Key {
		return true
	}
	shown := key
	if len(shown) > 12 {
		shown = shown[:8] + strings.Repeat("*", 8) + shown[len(shown)-4:]
	}
	msg := "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
	if key != "" {
		msg = "Incorrect API key provided: " + shown + ". You can find your API key at https://platform.openai.com/account/api-keys."
	}
	openaiError(w, id, http.StatusUnauthorized, msg, "invalid_request_error", "", "invalid_api_key")
	return false
}

func (f *OpenAIFake) edits(w http.ResponseWriter, r *http.Request) {
	id := f.requestID()
	if !f.authorized(w, r, id) {
		return
	}
	sc := f.Next()
	mt, mp, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || mp["boundary"] == "" {
		ProtocolError(w, "images/edits wants multipart/form-data with a boundary, got %q", r.Header.Get("Content-Type"))
		return
	}
	form, err := multipart.NewReader(r.Body, mp["boundary"]).ReadForm(64 << 20)
	if err != nil {
		ProtocolError(w, "unreadable multipart body: %v", err)
		return
	}
	defer form.RemoveAll()
	for name, vs := range form.Value {
		if !slices.Contains(openaiEditFields, name) {
			openaiError(w, id, http.StatusBadRequest, fmt.Sprintf("fake: Unknown parameter: '%s'.", name), "invalid_request_error", name, "unknown_parameter")
			return
		}
		if len(vs) != 1 {
			ProtocolError(w, "field %s sent %d times", name, len(vs))
			return
		}
	}
	for name := range form.File {
		if name != "image[]" && name != "image" && name != "mask" {
			ProtocolError(w, "unexpected file part %q", name)
			return
		}
	}
	val := func(name string) string {
		if vs := form.Value[name]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	params := map[string]string{}
	for name := range form.Value {
		params[name] = val(name)
	}
	if msg := checkOpenAIParams(params); msg != "" {
		ProtocolError(w, "%s", msg)
		return
	}
	if v := val("input_fidelity"); v != "" && v != "low" && v != "high" {
		ProtocolError(w, "input_fidelity %q is not low or high", v)
		return
	}
	images := append(form.File["image[]"], form.File["image"]...)
	if len(images) == 0 || len(images) > 16 {
		ProtocolError(w, "images/edits wants 1..16 image[] parts, got %d", len(images))
		return
	}
	var firstW, firstH int
	for i, fh := range images {
		data, err := readPart(fh)
		if err != nil {
			ProtocolError(w, "image part %d: %v", i, err)
			return
		}
		if ct := fh.Header.Get("Content-Type"); !slices.Contains(openaiImageTypes, ct) {
			ProtocolError(w, "Invalid file 'image': unsupported mimetype ('%s'). Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.", ct)
			return
		}
		iw, ih, err := DecodeSize(data)
		if err != nil {
			ProtocolError(w, "image part %d (%s) does not decode", i, fh.Filename)
			return
		}
		if i == 0 {
			firstW, firstH = iw, ih
		}
	}
	if masks := form.File["mask"]; len(masks) > 0 {
		if len(masks) > 1 {
			ProtocolError(w, "more than one mask part")
			return
		}
		data, err := readPart(masks[0])
		if err != nil {
			ProtocolError(w, "mask part: %v", err)
			return
		}
		if ct := masks[0].Header.Get("Content-Type"); ct != "image/png" {
			ProtocolError(w, "mask must be sent as image/png, got %q", ct)
			return
		}
		m, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			ProtocolError(w, "mask is not a PNG: %v", err)
			return
		}
		if !pngHasAlpha(data) {
			ProtocolError(w, "Invalid input image - mask must have an alpha channel (RGBA or LA)")
			return
		}
		if b := m.Bounds(); b.Dx() != firstW || b.Dy() != firstH {
			ProtocolError(w, "Invalid mask image: mask is %dx%d but the first image is %dx%d", b.Dx(), b.Dy(), firstW, firstH)
			return
		}
	}
	f.play(w, r, id, sc, params)
}

func (f *OpenAIFake) generations(w http.ResponseWriter, r *http.Request) {
	id := f.requestID()
	if !f.authorized(w, r, id) {
		return
	}
	sc := f.Next()
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		ProtocolError(w, "images/generations wants application/json, got %q", r.Header.Get("Content-Type"))
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		ProtocolError(w, "body is not JSON: %v", err)
		return
	}
	params := map[string]string{}
	for name, v := range body {
		if !slices.Contains(openaiGenFields, name) {
			openaiError(w, id, http.StatusBadRequest, fmt.Sprintf("fake: Unknown parameter: '%s'.", name), "invalid_request_error", name, "unknown_parameter")
			return
		}
		switch v := v.(type) {
		case string:
			params[name] = v
		case float64:
			params[name] = strconv.FormatFloat(v, 'f', -1, 64)
		default:
			ProtocolError(w, "field %s has type %T", name, v)
			return
		}
	}
	if msg := checkOpenAIParams(params); msg != "" {
		ProtocolError(w, "%s", msg)
		return
	}
	if v := params["moderation"]; v != "" && v != "auto" && v != "low" {
		ProtocolError(w, "moderation %q is not auto or low", v)
		return
	}
	f.play(w, r, id, sc, params)
}

// checkOpenAIParams checks the fields both endpoints share.
func checkOpenAIParams(p map[string]string) string {
	switch {
	case p["model"] != "gpt-image-1":
		return fmt.Sprintf("model must be set to gpt-image-1 explicitly, got %q", p["model"])
	case strings.TrimSpace(p["prompt"]) == "":
		return "prompt is required"
	case p["n"] != "" && p["n"] != "1":
		return fmt.Sprintf("n is %q; likeness asks for one image", p["n"])
	case p["size"] != "" && !slices.Contains(openaiSizes, p["size"]):
		return fmt.Sprintf("size %q is not one of %v", p["size"], openaiSizes)
	case p["quality"] != "" && !slices.Contains(openaiQualities, p["quality"]):
		return fmt.Sprintf("quality %q is not one of %v", p["quality"], openaiQualities)
	case p["output_format"] != "" && !slices.Contains(openaiFormats, p["output_format"]):
		return fmt.Sprintf("output_format %q is not one of %v", p["output_format"], openaiFormats)
	case p["background"] != "" && !slices.Contains(openaiBackground, p["background"]):
		return fmt.Sprintf("background %q is not one of %v", p["background"], openaiBackground)
	}
	if v, ok := p["output_compression"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return fmt.Sprintf("output_compression %q is not 0..100", v)
		}
	}
	return ""
}

// play answers a well-formed request as the scenario says.
func (f *OpenAIFake) play(w http.ResponseWriter, r *http.Request, id string, sc Scenario, p map[string]string) {
	switch sc {
	case RateLimited:
		h := w.Header()
		h.Set("retry-after", strconv.Itoa(int(RateWait/time.Second)))
		h.Set("x-ratelimit-limit-requests", "5")
		h.Set("x-ratelimit-remaining-requests", "0")
		h.Set("x-ratelimit-reset-requests", RateWait.String())
		openaiError(w, id, http.StatusTooManyRequests,
			"Rate limit reached for gpt-image-1 in organization org-fake on images per min (IPM): Limit 5, Used 5, Requested 1. Please try again in 7s. Visit https://platform.openai.com/account/rate-limits to learn more.",
			"requests", "", "rate_limit_exceeded")
	case ServerError:
		openaiError(w, id, http.StatusInternalServerError, "The server had an error while processing your request. Sorry about that!", "server_error", "", "")
	case Moderated:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-request-id", id)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"error":{"message":"Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID %s. safety_violations=[sexual].","type":"image_generation_user_error","param":null,"code":"moderation_blocked","moderation_details":{"moderation_stage":"input","categories":["sexual"]}}}`, id)
	case Billing:
		openaiError(w, id, http.StatusTooManyRequests, "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.", "insufficient_quota", "", "insufficient_quota")
	case Unauthorized:
		openaiError(w, id, http.StatusUnauthorized, "Incorrect API key provided: sk-proj-********************abcd. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "", "invalid_api_key")
	case BadInput:
		openaiError(w, id, http.StatusBadRequest, "Invalid value: 'ultra'. Supported values are: 'low', 'medium', 'high', and 'auto'.", "invalid_request_error", "quality", "invalid_value")
	case Malformed:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-request-id", id)
		_, _ = w.Write([]byte(`{"created": 1713833628, "data": [{"b64_json": "iVBORw0KGgo`))
	case Slow:
		Hold(w, r)
	default: // OK; OutputExpired and TaskFailed do not exist here
		size := p["size"]
		if size == "" || size == "auto" {
			size = "1024x1024"
		}
		format := p["output_format"]
		if format != "jpeg" {
			format = "png" // the fake does not encode WebP
		}
		data := f.image(size, format)
		resp := map[string]any{
			"created": time.Now().Unix(), "background": "opaque", "output_format": format,
			"quality": "high", "size": size,
			"data": []map[string]any{{"b64_json": base64.StdEncoding.EncodeToString(data)}},
			"usage": map[string]any{
				"input_tokens": 711, "input_tokens_details": map[string]any{"text_tokens": 65, "image_tokens": 646},
				"output_tokens": 4160, "total_tokens": 4871,
			},
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("x-request-id", id)
		h.Set("openai-processing-ms", "12")
		h.Set("x-ratelimit-limit-requests", "5")
		h.Set("x-ratelimit-remaining-requests", "4")
		h.Set("x-ratelimit-reset-requests", "12s")
		_ = json.NewEncoder(w).Encode(resp)
	}
}

// image returns an encoded output of size "WxH", rendered once per fake.
func (f *OpenAIFake) image(size, format string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := size + "." + format
	if data, ok := f.images[key]; ok {
		return data
	}
	var w, h int
	fmt.Sscanf(size, "%dx%d", &w, &h)
	data := PNG(w, h, 11)
	if format == "jpeg" {
		img, _ := png.Decode(bytes.NewReader(data))
		var buf bytes.Buffer
		_ = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80})
		data = buf.Bytes()
	}
	f.images[key] = data
	return data
}

func (f *OpenAIFake) requestID() string {
	return fmt.Sprintf("req_fake%024x", f.ids.Add(1))
}

// openaiError writes OpenAI's error body. Empty param and code are null.
func openaiError(w http.ResponseWriter, id string, status int, msg, typ, param, code string) {
	null := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	w.Header().Set("Content-Type", "application/json")
	if id != "" {
		w.Header().Set("x-request-id", id)
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": null(param), "code": null(code),
	}})
}

func readPart(fh *multipart.FileHeader) ([]byte, error) {
	file, err := fh.Open()
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(file)
	return buf.Bytes(), err
}

// pngHasAlpha reports whether a PNG stores an alpha channel: colour type
// 4 (grey + alpha) or 6 (RGBA), or a tRNS chunk. (Go's decoder returns RGBA
// images for plain RGB files, so the header is read, not the decoded image.)
func pngHasAlpha(data []byte) bool {
	const colorTypeAt = 8 + 8 + 4 + 4 + 1 // signature, IHDR length+type, width, height, bit depth
	if len(data) <= colorTypeAt || !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		return false
	}
	switch data[colorTypeAt] {
	case 4, 6:
		return true
	}
	return bytes.Contains(data, []byte("tRNS"))
}
