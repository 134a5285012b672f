package ark_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/ark"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
)

const model = "seededit-3-0-i2i-250628"

func newClient(t *testing.T, cfg ark.Config) *ark.Client {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = providertest.ArkKey
	}
	c, err := ark.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(params map[string]any) provider.Request {
	ref := providertest.Reference()
	return provider.Request{
		Model: model, Prompt: "restyle this person as anime", Character: "mara",
		Reference: provider.Image{Data: ref, ContentType: "image/png"},
		Seed:      1234, Params: params,
	}
}

// posts returns the recorded generation requests (not downloads).
func posts(f *providertest.ArkFake) []providertest.Request {
	var out []providertest.Request
	for _, r := range f.Requests() {
		if r.Method == http.MethodPost {
			out = append(out, r)
		}
	}
	return out
}

func onlyBody(t *testing.T, f *providertest.ArkFake) providertest.ArkRequest {
	t.Helper()
	reqs := posts(f)
	if len(reqs) != 1 {
		t.Fatalf("%d generation requests; want 1", len(reqs))
	}
	if reqs[0].Path != "/api/v3/images/generations" {
		t.Errorf("path %s; want /api/v3/images/generations", reqs[0].Path)
	}
	body, err := providertest.ArkBody(reqs[0])
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, format := range []string{ark.ResponseBase64, ark.ResponseURL} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			providertest.Run(t, providertest.Harness{
				NewFake: func(t *testing.T) providertest.Fake {
					f := providertest.NewArk(t)
					f.URLOutputs = format == ark.ResponseURL
					return f
				},
				NewGenerator: func(t *testing.T, baseURL string) provider.Generator {
					return newClient(t, ark.Config{BaseURL: baseURL, ResponseFormat: format})
				},
				Model:    model,
				Params:   map[string]any{"guidance_scale": 6.5},
				Key:      providertest.ArkKey,
				Provider: ark.ProviderName, FetchesURLs: true,
			})
		})
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	for _, cfg := range []ark.Config{
		{},
		{APIKey: "k", BaseURL: "ark.example.com"},
		{APIKey: "k", ResponseFormat: "png"},
	} {
		if _, err := ark.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// TestClassification replays recorded Ark error answers. Codes, statuses
// and messages follow shared/providers.md section 6 and BytePlus's common
// error code table ("... Request ID: {id}").
func TestClassification(t *testing.T) {
	t.Parallel()
	const rid = "021757000000000abcdef0123456789abcdef0123456789abcd"
	body := func(code, msg, typ string) string { return providertest.ArkError(code, msg, "", typ, rid) }
	tests := []struct {
		name       string
		status     int
		header     map[string]string
		body       string
		class      provider.Class
		code       string
		retryAfter time.Duration
		requestID  string
	}{
		{name: "missing parameter", status: 400, class: provider.Input, code: "MissingParameter",
			body: body("MissingParameter", "The request failed because it is missing one or multiple required parameters.", "BadRequest")},
		{name: "invalid parameter", status: 400, class: provider.Input, code: "InvalidParameter",
			body: providertest.ArkError("InvalidParameter", "One or more parameters specified in the request are not valid.", "image", "BadRequest", rid)},
		{name: "input text risk", status: 400, class: provider.Safety, code: "InputTextRiskDetection",
			body: body("InputTextRiskDetection", "The request failed because the input text may contain sensitive information.", "BadRequest")},
		{name: "input image risk", status: 400, class: provider.Safety, code: "InputImageRiskDetection",
			body: body("InputImageRiskDetection", "The request failed because the input image may contain sensitive information.", "BadRequest")},
		{name: "output image risk", status: 400, class: provider.Safety, code: "OutputImageRiskDetection",
			body: body("OutputImageRiskDetection", "The request failed because the output image may contain sensitive information.", "BadRequest")},
		{name: "output image sensitive", status: 400, class: provider.Safety, code: "OutputImageSensitiveContentDetected",
			body: body("OutputImageSensitiveContentDetected", "The request failed because the output image may contain sensitive information.", "BadRequest")},
		{name: "input text violence", status: 400, class: provider.Safety, code: "SensitiveContentDetected.Violence",
			body: body("SensitiveContentDetected.Violence", "The request failed because the input text may contain violence information.", "BadRequest")},
		{name: "closed endpoint", status: 400, class: provider.Transient, code: "InvalidEndpoint.ClosedEndpoint",
			body: body("InvalidEndpoint.ClosedEndpoint", "The request targeted an endpoint that is currently closed or temporarily unavailable.", "BadRequest")},
		{name: "bad key", status: 401, class: provider.Billing, code: "AuthenticationError",
			body: body("AuthenticationError", "The API key or AK/SK in the request is missing or invalid.", "Unauthorized")},
		{name: "overdue", status: 403, class: provider.Billing, code: "AccountOverdueError",
			body: body("AccountOverdueError", "The request failed because your account has an overdue balance.", "Forbidden")},
		{name: "access denied", status: 403, class: provider.Billing, code: "AccessDenied",
			body: body("AccessDenied", "The request failed because you do not have access to the requested resource.", "Forbidden")},
		{name: "model not open", status: 404, class: provider.Billing, code: "ModelNotOpen",
			body: body("ModelNotOpen", "Your account has not activated the model seededit-3-0-i2i-250628. Please activate the model service in the Ark Console.", "NotFound")},
		{name: "unknown model or endpoint", status: 404, class: provider.Billing, code: "InvalidEndpointOrModel.NotFound",
			body: body("InvalidEndpointOrModel.NotFound", "The model or endpoint seededit-3-0 does not exist or you do not have access to it.", "NotFound")},
		{name: "rpm with Retry-After", status: 429, header: map[string]string{"Retry-After": "7"}, class: provider.Rate,
			code: "RateLimitExceeded.EndpointRPMExceeded", retryAfter: 7 * time.Second,
			body: body("RateLimitExceeded.EndpointRPMExceeded", "The Requests Per Minute (RPM) limit of the associated endpoint for your account has been exceeded.", "TooManyRequests")},
		{name: "overloaded without a hint", status: 429, class: provider.Rate, code: "ServerOverloaded", retryAfter: ark.DefaultRateLimitWait,
			body: body("ServerOverloaded", "The service is currently unable to handle additional requests due to server overload.", "TooManyRequests")},
		{name: "free trial used up", status: 429, class: provider.Billing, code: "QuotaExceeded",
			body: body("QuotaExceeded", "Your account has exhausted its free trial quota for the model service.", "TooManyRequests")},
		{name: "free tokens only mode", status: 429, class: provider.Billing, code: "ModelQuotaExhausted",
			body: body("ModelQuotaExhausted", "Your account has exhausted its free token quota in Free Tokens Only Mode.", "TooManyRequests")},
		{name: "own spending cap", status: 429, class: provider.Billing, code: "SetLimitExceeded",
			body: body("SetLimitExceeded", "Your account has reached the inference limit you set in safe experience mode.", "TooManyRequests")},
		{name: "internal", status: 500, class: provider.Transient, code: "InternalServiceError",
			body: body("InternalServiceError", "The service encountered an unexpected internal error.", "InternalServerError")},
		{name: "gateway html", status: 502, class: provider.Transient, body: "<html>502 Bad Gateway</html>", requestID: "-"},
		{name: "header id wins", status: 400, header: map[string]string{"X-Request-Id": "hdr-1"}, class: provider.Input, code: "InvalidParameter",
			body: body("InvalidParameter", "One or more parameters specified in the request are not valid.", "BadRequest"), requestID: "hdr-1"},
		{name: "error inside a 200", status: 200, class: provider.Safety, code: "OutputImageSensitiveContentDetected",
			body: `{"model":"seededit-3-0-i2i-250628","created":1757000000,"data":[{"error":{"code":"OutputImageSensitiveContentDetected","message":"The request failed because the output image may contain sensitive information. Request ID: ` + rid + `"}}]}`},
		{name: "no images", status: 200, class: provider.Transient, requestID: "-",
			body: `{"model":"seededit-3-0-i2i-250628","created":1757000000,"data":[],"usage":{"generated_images":0}}`},
		{name: "bad base64", status: 200, class: provider.Transient, requestID: "seededit-3-0-i2i-250628-1757000000",
			body: `{"model":"seededit-3-0-i2i-250628","created":1757000000,"data":[{"b64_json":"%%%","size":"96x128"}]}`},
		{name: "not json", status: 200, class: provider.Transient, body: "<html>oops</html>", requestID: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := replay(t, tt.status, tt.header, tt.body)
			_, err := newClient(t, ark.Config{BaseURL: srv.URL}).Generate(context.Background(), request(nil))
			var pe *provider.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v; want *provider.Error", err, err)
			}
			wantID := tt.requestID
			switch wantID {
			case "":
				wantID = rid
			case "-":
				wantID = ""
			}
			type outcome struct {
				Class      provider.Class
				Code       string
				RetryAfter time.Duration
				RequestID  string
				Provider   string
			}
			want := outcome{tt.class, tt.code, tt.retryAfter, wantID, "ark"}
			got := outcome{pe.Class, pe.Code, pe.RetryAfter, pe.RequestID, pe.Provider}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("classification (-want +got):\n%s\nerror: %v", diff, err)
			}
			if pe.Message == "" || len(pe.Message) > 320 {
				t.Errorf("message %q; want a short explanation", pe.Message)
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

func TestRequestBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      ark.Config
		params   map[string]any
		guidance float64
		format   string
		model    string
	}{
		{name: "defaults", guidance: 5.5, format: "b64_json", model: model},
		{name: "guidance and url outputs", cfg: ark.Config{ResponseFormat: ark.ResponseURL},
			params: map[string]any{"guidance_scale": 7.5}, guidance: 7.5, format: "url", model: model},
		{name: "integer guidance", params: map[string]any{"guidance_scale": 3}, guidance: 3, format: "b64_json", model: model},
		{name: "endpoint id mapping", cfg: ark.Config{ModelIDs: map[string]string{model: providertest.ArkModel}},
			guidance: 5.5, format: "b64_json", model: providertest.ArkModel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewArk(t)
			cfg := tt.cfg
			cfg.BaseURL = fake.URL()
			res, err := newClient(t, cfg).Generate(context.Background(), request(tt.params))
			if err != nil {
				t.Fatal(err)
			}
			if res.CostUSD != 0.03 {
				t.Errorf("cost %v; want 0.03", res.CostUSD)
			}
			reqs := posts(fake)
			if len(reqs) != 1 {
				t.Fatalf("%d requests; want 1", len(reqs))
			}
			if got := reqs[0].Header.Get("Authorization"); got != "Bearer "+providertest.ArkKey {
				t.Errorf("Authorization %q; want the Bearer key", got)
			}
			b := onlyBody(t, fake)
			got := map[string]any{
				"model": *b.Model, "prompt": *b.Prompt, "response_format": *b.ResponseFormat, "size": *b.Size,
				"seed": *b.Seed, "guidance_scale": *b.GuidanceScale, "watermark": b.Watermark != nil && !*b.Watermark,
			}
			want := map[string]any{
				"model": tt.model, "prompt": "restyle this person as anime", "response_format": tt.format, "size": "adaptive",
				"seed": int64(1234), "guidance_scale": tt.guidance, "watermark": true,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("body (-want +got; watermark true means false was sent):\n%s", diff)
			}
			wantURI := "data:image/png;base64," + base64.StdEncoding.EncodeToString(providertest.Reference())
			if *b.Image != wantURI {
				t.Errorf("image is not the reference as a png data URI: %.60s...", *b.Image)
			}
		})
	}
}

func TestWatermarkAlwaysFalse(t *testing.T) {
	t.Parallel()
	fake := providertest.NewArk(t)
	if _, err := newClient(t, ark.Config{BaseURL: fake.URL()}).Generate(context.Background(), request(nil)); err != nil {
		t.Fatal(err)
	}
	raw := string(posts(fake)[0].Body)
	if !strings.Contains(raw, `"watermark":false`) {
		t.Errorf("body does not send watermark false explicitly: %.200s", raw)
	}
}

func TestReferenceFormats(t *testing.T) {
	t.Parallel()
	webp, err := os.ReadFile("testdata/reference.webp") // 150x100 lossy WebP from golang.org/x/image/testdata
	if err != nil {
		t.Fatal(err)
	}
	var jpg bytes.Buffer
	src, _ := png.Decode(bytes.NewReader(providertest.Reference()))
	if err := jpeg.Encode(&jpg, src, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		data   []byte
		prefix string
		same   bool
		w, h   int
	}{
		{"png as is", providertest.Reference(), "data:image/png;base64,", true, 96, 128},
		{"jpeg as is, lowercase format", jpg.Bytes(), "data:image/jpeg;base64,", true, 96, 128},
		{"webp converted to png", webp, "data:image/png;base64,", false, 150, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewArk(t)
			req := request(nil)
			req.Reference = provider.Image{Data: tt.data, ContentType: "image/webp"} // declared type is not trusted
			if _, err := newClient(t, ark.Config{BaseURL: fake.URL()}).Generate(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			uri := *onlyBody(t, fake).Image
			payload, ok := strings.CutPrefix(uri, tt.prefix)
			if !ok {
				t.Fatalf("image %.40s...; want prefix %s", uri, tt.prefix)
			}
			data, err := base64.StdEncoding.DecodeString(payload)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(data, tt.data) != tt.same {
				t.Errorf("bytes passed unchanged = %v; want %v", !tt.same, tt.same)
			}
			cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
			if err != nil || cfg.Width != tt.w || cfg.Height != tt.h {
				t.Errorf("sent image %dx%d (%v); want %dx%d", cfg.Width, cfg.Height, err, tt.w, tt.h)
			}
		})
	}
}

func TestLargeReferenceGoesByURL(t *testing.T) {
	t.Parallel()
	fake := providertest.NewArk(t)
	req := request(nil)
	req.Reference.URL = "https://bucket.example.com/refs/abc.png?X-Amz-Signature=x"
	c := newClient(t, ark.Config{BaseURL: fake.URL(), InlineLimit: 100})
	if _, err := c.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := *onlyBody(t, fake).Image; got != req.Reference.URL {
		t.Errorf("image %.60s; want the reference URL", got)
	}
}

func TestOutputs(t *testing.T) {
	t.Parallel()
	for _, format := range []string{ark.ResponseBase64, ark.ResponseURL} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			fake := providertest.NewArk(t)
			res, err := newClient(t, ark.Config{BaseURL: fake.URL(), ResponseFormat: format}).Generate(context.Background(), request(nil))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(res.Image.Data, providertest.PNG(96, 128, 1234)) || res.Image.ContentType != "image/png" {
				t.Errorf("output is not the generated PNG (type %q)", res.Image.ContentType)
			}
			if !strings.HasPrefix(res.RequestID, "02175") {
				t.Errorf("request id %q; want the x-request-id header", res.RequestID)
			}
			var downloads int
			for _, r := range fake.Requests() {
				if r.Method == http.MethodGet {
					downloads++
					if r.Header.Get("Authorization") != "" {
						t.Error("the output download carried the API key")
					}
				}
			}
			if want := map[string]int{ark.ResponseBase64: 0, ark.ResponseURL: 1}[format]; downloads != want {
				t.Errorf("%d downloads; want %d", downloads, want)
			}
		})
	}
}

func TestExpiredURLOutput(t *testing.T) {
	t.Parallel()
	fake := providertest.NewArk(t)
	fake.Script(providertest.OutputExpired)
	_, err := newClient(t, ark.Config{BaseURL: fake.URL(), ResponseFormat: ark.ResponseURL}).Generate(context.Background(), request(nil))
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.Transient || pe.RequestID == "" {
		t.Fatalf("expired output: %v; want transient with the request id", err)
	}
}

func TestScenarioCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sc    providertest.Scenario
		class provider.Class
		code  string
	}{
		{providertest.ArkOutputSensitive, provider.Safety, "OutputImageSensitiveContentDetected"},
		{providertest.Moderated, provider.Safety, "InputTextRiskDetection"},
		{providertest.ArkModelNotOpen, provider.Billing, "ModelNotOpen"},
		{providertest.Billing, provider.Billing, "AccountOverdueError"},
		{providertest.Unauthorized, provider.Billing, "AuthenticationError"},
		{providertest.BadInput, provider.Input, "InvalidParameter"},
		{providertest.RateLimited, provider.Rate, "RateLimitExceeded.EndpointRPMExceeded"},
	}
	for _, tt := range tests {
		fake := providertest.NewArk(t)
		fake.Script(tt.sc)
		_, err := newClient(t, ark.Config{BaseURL: fake.URL()}).Generate(context.Background(), request(nil))
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Class != tt.class || pe.Code != tt.code || pe.RequestID == "" {
			t.Errorf("%s: %v; want %s [%s] with a request id", tt.sc, err, tt.class, tt.code)
		}
	}
}

func TestVolcengineModelIDUnknownOnBytePlus(t *testing.T) {
	t.Parallel()
	// A Volcengine model id sent to BytePlus is a configuration problem:
	// billing class, so the provider stops instead of failing task by task.
	fake := providertest.NewArk(t)
	c := newClient(t, ark.Config{BaseURL: fake.URL(), ModelIDs: map[string]string{model: "doubao-seededit-3-0-i2i-250628"}})
	_, err := c.Generate(context.Background(), request(nil))
	if !errors.Is(err, provider.ErrBilling) {
		t.Fatalf("%v; want a billing/config error", err)
	}
	if got := *onlyBody(t, fake).Model; got != "doubao-seededit-3-0-i2i-250628" {
		t.Errorf("model %q; want the mapped id", got)
	}
}

func TestInputErrors(t *testing.T) {
	t.Parallel()
	fake := providertest.NewArk(t)
	c := newClient(t, ark.Config{BaseURL: fake.URL()})
	tests := []struct {
		name string
		edit func(*provider.Request)
	}{
		{"too small", func(r *provider.Request) { r.Reference = provider.Image{Data: providertest.PNG(14, 40, 1)} }},
		{"too elongated", func(r *provider.Request) { r.Reference = provider.Image{Data: providertest.PNG(200, 40, 1)} }},
		{"not an image", func(r *provider.Request) { r.Reference = provider.Image{Data: []byte("hello")} }},
		{"no bytes and no url", func(r *provider.Request) { r.Reference = provider.Image{} }},
		{"inpainting", func(r *provider.Request) {
			r.Image = &provider.Image{Data: providertest.Reference()}
			r.Mask = &provider.Image{Data: providertest.Reference()}
		}},
		{"guidance out of range", func(r *provider.Request) { r.Params = map[string]any{"guidance_scale": 11.0} }},
		{"unknown param", func(r *provider.Request) { r.Params = map[string]any{"watermark": true} }},
		{"unknown model", func(r *provider.Request) { r.Model = "seedream-4-0" }},
		{"empty prompt", func(r *provider.Request) { r.Prompt = "" }},
	}
	for _, tt := range tests {
		req := request(nil)
		tt.edit(&req)
		_, err := c.Generate(context.Background(), req)
		if !errors.Is(err, provider.ErrInput) {
			t.Errorf("%s: %v; want an input error", tt.name, err)
		}
	}
	if n := fake.Calls(); n != 0 {
		t.Errorf("%d requests reached Ark; bad input should be caught locally", n)
	}
}

func ExampleClient_Generate() {
	client, err := ark.New(ark.Config{APIKey: os.Getenv("ARK_API_KEY")})
	if err != nil {
		fmt.Println(err)
		return
	}
	ref, _ := os.ReadFile("refs/mara.png")
	res, err := client.Generate(context.Background(), provider.Request{
		Model:     "seededit-3-0-i2i-250628",
		Prompt:    "restyle this person as anime",
		Reference: provider.Image{Data: ref},
		Seed:      42,
		Params:    map[string]any{"guidance_scale": 6.0},
	})
	if err != nil {
		fmt.Println(provider.ClassOf(err), err)
		return
	}
	fmt.Println(res.RequestID, res.CostUSD, res.Image.ContentType)
}
