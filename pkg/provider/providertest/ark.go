package providertest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // SeedEdit input format
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// Ark-only scenarios, played by ArkFake when scripted.
const (
	// ArkOutputSensitive rejects the generated image (400
	// OutputImageSensitiveContentDetected).
	ArkOutputSensitive Scenario = "ark_output_sensitive"
	// ArkModelNotOpen answers 404 ModelNotOpen: the model is not activated
	// for the account.
	ArkModelNotOpen Scenario = "ark_model_not_open"
)

// ArkKey is the API key an ArkFake accepts by default.
const ArkKey = "ark-test-key-7e21"

// ArkModel is the only model id ArkFake serves.
const ArkModel = "seededit-3-0-i2i-250628"

// ArkError returns an Ark error body as the API writes it:
// {"error":{"code","message","param","type"}}, the message ending in
// "Request ID: <id>".
func ArkError(code, message, param, typ, requestID string) string {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{
		"code": code, "message": message + " Request ID: " + requestID, "param": param, "type": typ,
	}})
	return string(b)
}

// ArkFake speaks BytePlus ModelArk's image generation API for SeedEdit 3.0:
// POST /api/v3/images/generations, synchronous, Bearer auth, OpenAI-shaped
// JSON. It checks the body strictly (no unknown fields, the model id, a
// lowercase jpeg/png data URI or an http(s) URL for image, SeedEdit's
// ranges, size "adaptive") and insists on "watermark": false being sent,
// since the real default is true. Every answer carries x-request-id.
type ArkFake struct {
	*Base
	// Key is the API key the fake accepts. Default ArkKey.
	Key string
	// URLOutputs, when set, declares that the adapter under test asks for
	// response_format "url": only then can an output link expire, so only
	// then is OutputExpired supported.
	URLOutputs bool

	n atomic.Int64
}

// NewArk starts an Ark fake on 127.0.0.1.
func NewArk(t testing.TB) *ArkFake {
	t.Helper()
	f := &ArkFake{Base: NewBase(t), Key: ArkKey}
	f.Mux.HandleFunc("POST /api/v3/images/generations", f.generate)
	return f
}

// URL is the API root to configure the adapter with, like the real
// https://ark.ap-southeast.bytepluses.com/api/v3.
func (f *ArkFake) URL() string { return f.Base.URL() + "/api/v3" }

// Supports reports every scenario but TaskFailed (the API is synchronous)
// and, unless URLOutputs is set, OutputExpired (base64 outputs cannot
// expire).
func (f *ArkFake) Supports(s Scenario) bool {
	switch s {
	case TaskFailed:
		return false
	case OutputExpired:
		return f.URLOutputs
	}
	return true
}

// ArkRequest is the JSON body ArkFake accepts; tests decode recorded
// bodies into it. Pointer fields tell "absent" from zero.
type ArkRequest struct {
	Model          *string  `json:"model"`
	Prompt         *string  `json:"prompt"`
	Image          *string  `json:"image"`
	ResponseFormat *string  `json:"response_format"`
	Size           *string  `json:"size"`
	Seed           *int64   `json:"seed"`
	GuidanceScale  *float64 `json:"guidance_scale"`
	Watermark      *bool    `json:"watermark"`
}

// ArkBody decodes a recorded request body strictly.
func ArkBody(r Request) (ArkRequest, error) {
	var body ArkRequest
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		return body, fmt.Errorf("body is not the expected JSON: %v", err)
	}
	return body, nil
}

func (f *ArkFake) generate(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		ProtocolError(w, "Ark authenticates with Authorization: Bearer <key>")
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		ProtocolError(w, "content type %q; want application/json", r.Header.Get("Content-Type"))
		return
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(r.Body)
	body, err := ArkBody(Request{Body: buf.Bytes()})
	if err != nil {
		ProtocolError(w, "%v", err)
		return
	}
	width, height, err := arkCheck(body)
	if err != nil {
		ProtocolError(w, "%v", err)
		return
	}
	if why := f.Unfetchable(*body.Image); why != "" {
		arkJSON(w, http.StatusBadRequest, ArkError("InvalidParameter",
			"The parameter `image` specified in the request is not valid: the image url cannot be downloaded ("+why+").", "image", "BadRequest",
			fmt.Sprintf("0217570000000%08dfake", f.n.Add(1))))
		return
	}

	n := f.n.Add(1)
	id := fmt.Sprintf("0217570000000%08dfake", n)
	w.Header().Set("X-Request-Id", id)
	sc := f.Next()
	switch {
	case BearerKey(r) != f.Key:
		sc = Unauthorized
	case *body.Model != ArkModel && sc == OK:
		sc = ArkModelNotOpen
	}
	switch sc {
	case OK, OutputExpired:
		format := arkResponseFormat(body)
		if sc == OutputExpired && format != "url" {
			ProtocolError(w, "output_expired needs response_format url")
			return
		}
		data := PNG(width, height, *body.Seed)
		item := map[string]any{"size": fmt.Sprintf("%dx%d", width, height)}
		if format == "url" {
			item["url"] = f.Host(fmt.Sprintf("ark-%d.png", n), data, sc == OutputExpired) +
				"?X-Tos-Algorithm=TOS4-HMAC-SHA256&X-Tos-Expires=86400&X-Tos-Signature=fake"
		} else {
			item["b64_json"] = base64.StdEncoding.EncodeToString(data)
		}
		out, _ := json.Marshal(map[string]any{
			"model": *body.Model, "created": 1757000000 + n,
			"data":  []any{item},
			"usage": map[string]int{"generated_images": 1, "output_tokens": width * height / 256, "total_tokens": width * height / 256},
		})
		arkJSON(w, http.StatusOK, string(out))
	case RateLimited:
		w.Header().Set("Retry-After", strconv.Itoa(int(RateWait.Seconds())))
		arkJSON(w, http.StatusTooManyRequests, ArkError("RateLimitExceeded.EndpointRPMExceeded",
			"The Requests Per Minute (RPM) limit of the associated endpoint for your account has been exceeded.", "", "TooManyRequests", id))
	case ServerError:
		arkJSON(w, http.StatusInternalServerError, ArkError("InternalServiceError",
			"The service encountered an unexpected internal error.", "", "InternalServerError", id))
	case Moderated:
		arkJSON(w, http.StatusBadRequest, ArkError("InputTextRiskDetection",
			"The request failed because the input text may contain sensitive information.", "prompt", "BadRequest", id))
	case ArkOutputSensitive:
		arkJSON(w, http.StatusBadRequest, ArkError("OutputImageSensitiveContentDetected",
			"The request failed because the output image may contain sensitive information.", "", "BadRequest", id))
	case Billing:
		arkJSON(w, http.StatusForbidden, ArkError("AccountOverdueError",
			"The request failed because your account has an overdue balance.", "", "Forbidden", id))
	case ArkModelNotOpen:
		arkJSON(w, http.StatusNotFound, ArkError("ModelNotOpen",
			fmt.Sprintf("Your account has not activated the model %s. Please activate the model service in the Ark Console.", *body.Model), "", "NotFound", id))
	case Unauthorized:
		arkJSON(w, http.StatusUnauthorized, ArkError("AuthenticationError",
			"The API key or AK/SK in the request is missing or invalid.", "", "Unauthorized", id))
	case BadInput:
		arkJSON(w, http.StatusBadRequest, ArkError("InvalidParameter",
			"One or more parameters specified in the request are not valid.", "image", "BadRequest", id))
	case Malformed:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<html><body>gateway hiccup</body></html>"))
	case Slow:
		Hold(w, r)
	default:
		ProtocolError(w, "ark has no %s scenario", sc)
	}
}

// arkResponseFormat is the response_format a request asked for (Ark's
// default is "url").
func arkResponseFormat(body ArkRequest) string {
	if body.ResponseFormat == nil {
		return "url"
	}
	return *body.ResponseFormat
}

// arkCheck validates a body the way SeedEdit does and returns the output
// size ("adaptive": the input's size).
func arkCheck(b ArkRequest) (int, int, error) {
	switch {
	case b.Model == nil || *b.Model == "":
		return 0, 0, errors.New("model is required")
	case b.Prompt == nil || strings.TrimSpace(*b.Prompt) == "":
		return 0, 0, errors.New("prompt is required")
	case b.Image == nil || *b.Image == "":
		return 0, 0, errors.New("image is required")
	case b.Watermark == nil:
		return 0, 0, errors.New(`watermark must be sent explicitly as false (BytePlus defaults to true)`)
	case *b.Watermark:
		return 0, 0, errors.New("watermark is true; likeness never wants watermarked outputs")
	case b.ResponseFormat != nil && *b.ResponseFormat != "url" && *b.ResponseFormat != "b64_json":
		return 0, 0, fmt.Errorf("response_format %q is not url or b64_json", *b.ResponseFormat)
	case b.Size != nil && *b.Size != "adaptive":
		return 0, 0, fmt.Errorf("size %q; SeedEdit takes only adaptive", *b.Size)
	case b.Seed == nil:
		return 0, 0, errors.New("seed missing; likeness always sends its derived seed")
	case *b.Seed < -1 || *b.Seed > 2147483647:
		return 0, 0, fmt.Errorf("seed %d is outside -1..2147483647", *b.Seed)
	case b.GuidanceScale != nil && (*b.GuidanceScale < 1 || *b.GuidanceScale > 10):
		return 0, 0, fmt.Errorf("guidance_scale %v is outside 1..10", *b.GuidanceScale)
	}
	img := *b.Image
	if strings.HasPrefix(img, "http://") || strings.HasPrefix(img, "https://") {
		return 64, 64, nil
	}
	meta, payload, ok := strings.Cut(img, ",")
	if !ok || !strings.HasPrefix(meta, "data:image/") || !strings.HasSuffix(meta, ";base64") {
		return 0, 0, errors.New("image must be a URL or data:image/<format>;base64,<data>")
	}
	format := strings.TrimSuffix(strings.TrimPrefix(meta, "data:image/"), ";base64")
	if format != "jpeg" && format != "png" {
		return 0, 0, fmt.Errorf("image format %q; SeedEdit takes lowercase jpeg or png", format)
	}
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return 0, 0, errors.New("image data URI is not valid base64")
	}
	if len(data) > 10<<20 {
		return 0, 0, fmt.Errorf("image is %d bytes; the limit is 10 MB", len(data))
	}
	if got := http.DetectContentType(data); got != "image/"+format {
		return 0, 0, fmt.Errorf("data URI says image/%s but the bytes are %s", format, got)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return 0, 0, errors.New("image does not decode")
	}
	if cfg.Width <= 14 || cfg.Height <= 14 {
		return 0, 0, fmt.Errorf("image is %dx%d; each side must be over 14 px", cfg.Width, cfg.Height)
	}
	if r := float64(cfg.Width) / float64(cfg.Height); r > 3 || r < 1.0/3 {
		return 0, 0, fmt.Errorf("image aspect ratio %.2f is outside 1/3..3", r)
	}
	return cfg.Width, cfg.Height, nil
}

func arkJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
