package replicate

import (
	"bytes"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/likeness-run/likeness/pkg/provider"
)

const (
	testToken  = "r8_test_token_abcdefghijklmnopqrstuvwxyz"
	testOpenAI = "sk-proj-testOpenAIkey987654321"
)

func testClient(t *testing.T) *Client {
	t.Helper()
	c, err := New(Config{APIKey: testToken, OpenAIKey: testOpenAI, BaseURL: "https://api.replicate.com/v1"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Bodies below are Replicate's answers as recorded in shared/providers.md
// (section 1, failure signals) and replicate-go's problem+json errors.
func TestHTTPErrorClassification(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		class  provider.Class
		retry  time.Duration
		msg    string // substring of the message
	}{
		{"throttled with retry_after", 429, nil,
			`{"detail":"Request was throttled. Your rate limit resets in ~7s.","status":429,"retry_after":7}`,
			provider.Rate, 7 * time.Second, "resets in ~7s"},
		{"throttled, header only", 429, http.Header{"Retry-After": {"12"}},
			`{"detail":"Request was throttled.","status":429}`,
			provider.Rate, 12 * time.Second, "throttled"},
		{"throttled, text only", 429, nil,
			`{"detail":"Request was throttled. Your rate limit resets in ~30s.","status":429}`,
			provider.Rate, 30 * time.Second, "throttled"},
		{"throttled, low credit", 429, nil,
			`{"detail":"Request was throttled. Your rate limit for creating predictions is reduced to 6 requests per minute with a burst of 1 requests while you have less than $5.0 in credit. Your rate limit resets in ~10s.","status":429,"retry_after":10}`,
			provider.Rate, 10 * time.Second, "less than $5.0 in credit"},
		{"insufficient credit", 402, nil,
			`{"title":"Insufficient credit","detail":"You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, please wait a few minutes before trying again.","status":402}`,
			provider.Billing, 0, "Insufficient credit: You have insufficient credit"},
		{"bad token", 401, nil,
			`{"title":"Unauthenticated","detail":"You did not pass a valid authentication token","status":401}`,
			provider.Billing, 0, "Unauthenticated"},
		{"forbidden", 403, nil,
			`{"title":"Forbidden","detail":"You do not have permission to perform this action.","status":403}`,
			provider.Billing, 0, "permission"},
		{"unknown model", 404, nil, `{"detail":"Not found.","status":404}`, provider.Input, 0, "Not found."},
		{"schema", 422, nil,
			`{"type":"https://replicate.com/docs/errors/validation","title":"Input validation failed","status":422,"detail":"- input.aspect_ratio: aspect_ratio must be one of the following: \"1:1\", \"16:9\"","invalid_fields":[{"type":"enum","field":"input.aspect_ratio"}]}`,
			provider.Input, 0, "Input validation failed: - input.aspect_ratio"},
		{"bad request", 400, nil, `{"title":"Bad request","detail":"Invalid version or not permitted","status":400}`, provider.Input, 0, "Invalid version"},
		{"file too large", 413, nil, `{"title":"Request Entity Too Large","detail":"File size exceeds the maximum allowed size of 100MB","status":413}`, provider.Input, 0, "100MB"},
		{"server error", 500, nil, `{"title":"Internal Server Error","detail":"An unexpected error occurred","status":500}`, provider.Transient, 0, "unexpected"},
		{"proxy page", 502, nil, "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>", provider.Transient, 0, "Bad Gateway"},
		{"unavailable", 503, nil, "upstream connect error or disconnect/reset before headers", provider.Transient, 0, "upstream connect error"},
		{"timeout", 408, nil, "", provider.Transient, 0, "Request Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := tt.header
			if h == nil {
				h = http.Header{}
			}
			e := c.httpError(tt.status, h, []byte(tt.body), "create prediction")
			if e.Class != tt.class || e.RetryAfter != tt.retry || e.Status != tt.status || e.Provider != ProviderName || e.Code != "" {
				t.Errorf("got class %s, retry %s, status %d, provider %s, code %q; want %s, %s, %d", e.Class, e.RetryAfter, e.Status, e.Provider, e.Code, tt.class, tt.retry, tt.status)
			}
			if !strings.Contains(e.Message, tt.msg) || len(e.Message) > maxMessage {
				t.Errorf("message %q (%d bytes); want it to contain %q within %d bytes", e.Message, len(e.Message), tt.msg, maxMessage)
			}
		})
	}
}

func TestHTTPErrorRedactsSecrets(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	body := `{"title":"Input validation failed","detail":"input.openai_api_key ` + testOpenAI + ` rejected; token ` + testToken + `","status":422}`
	e := c.httpError(422, http.Header{}, []byte(body), "create prediction")
	if strings.Contains(e.Error(), testOpenAI) || strings.Contains(e.Error(), testToken) {
		t.Errorf("error leaks a secret: %v", e)
	}
	p := &prediction{ID: "p1", Status: statusFailed, Error: json.RawMessage(`"openai.AuthenticationError: Incorrect API key provided: ` + testOpenAI + `"`)}
	err := c.failure(p)
	if strings.Contains(err.Error(), testOpenAI) || provider.ClassOf(err) != provider.Billing {
		t.Errorf("failure %v; want a redacted billing error", err)
	}
}

func TestFailureClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text  string
		class provider.Class
		code  string
	}{
		{"E1000 unknown error", provider.Transient, "E1000"},
		{"Prediction failed for an unknown reason. It might have run out of memory? (E1000)", provider.Transient, "E1000"},
		{"CUDA out of memory. Tried to allocate 2.00 GiB (E1001)", provider.Input, "E1001"},
		{"torch.OutOfMemoryError: CUDA out of memory.", provider.Input, ""},
		{"The input or output was flagged as sensitive. Please try again with different inputs. (E005)", provider.Safety, "E005"},
		{"NSFW content detected. Try running it again, or try a different prompt.", provider.Safety, ""},
		{"Your request was rejected as a result of our safety system. Your request may contain content that is not allowed by our safety system.", provider.Safety, ""},
		{"Error code: 400 - {'error': {'code': 'moderation_blocked', 'message': 'Your request was rejected by the safety system.'}}", provider.Safety, ""},
		{"Error code: 401 - {'error': {'message': 'Incorrect API key provided: sk-proj-****abcd.', 'code': 'invalid_api_key'}}", provider.Billing, ""},
		{"Your organization must be verified to use the model `gpt-image-1`.", provider.Billing, ""},
		{"You exceeded your current quota, please check your plan and billing details.", provider.Billing, ""},
		{"Rate limit reached for gpt-image-1 in organization org-x on images per minute (IPM): Limit 5.", provider.Rate, ""},
		{"Director: unexpected error handling prediction (E8367)", provider.Transient, "E8367"},
		{"", provider.Transient, ""},
	}
	for _, tt := range tests {
		class, code := classifyFailure(tt.text)
		if class != tt.class || code != tt.code {
			t.Errorf("%q: %s %q; want %s %q", tt.text, class, code, tt.class, tt.code)
		}
	}
}

func TestSettled(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	out := json.RawMessage(`"https://replicate.delivery/x/out.png"`)
	tests := []struct {
		name  string
		p     prediction
		text  bool
		done  bool
		class provider.Class
		msg   string
	}{
		{"starting", prediction{Status: statusStarting}, false, false, "", ""},
		{"processing with output (sync)", prediction{Status: statusProcessing, Output: out}, false, true, "", ""},
		{"processing with partial text", prediction{Status: statusProcessing, Output: json.RawMessage(`["a"]`)}, true, false, "", ""},
		{"processing with empty array", prediction{Status: statusProcessing, Output: json.RawMessage(`[]`)}, false, false, "", ""},
		{"succeeded", prediction{Status: statusSucceeded, Output: out}, false, true, "", ""},
		{"succeeded, data removed", prediction{Status: statusSucceeded, Output: json.RawMessage(`null`), DataRemoved: true}, false, true, provider.Transient, "removed"},
		{"succeeded, no output", prediction{Status: statusSucceeded}, false, true, provider.Transient, "without output"},
		{"failed", prediction{Status: statusFailed, Error: json.RawMessage(`"E1000 unknown error"`)}, false, true, provider.Transient, "E1000"},
		{"failed, no text", prediction{Status: statusFailed, Error: json.RawMessage(`null`)}, false, true, provider.Transient, "without an error message"},
		{"failed, object error", prediction{Status: statusFailed, Error: json.RawMessage(`{"message":"NSFW detected"}`)}, false, true, provider.Safety, "NSFW"},
		{"canceled", prediction{Status: statusCanceled}, false, true, provider.Transient, "canceled"},
		{"aborted", prediction{Status: statusAborted}, false, true, provider.Transient, "aborted"},
		{"unknown status", prediction{Status: "queued"}, false, false, "", ""},
	}
	for _, tt := range tests {
		tt.p.ID = "p1"
		done, err := c.settled(&tt.p, tt.text)
		if done != tt.done || provider.ClassOf(err) != tt.class {
			t.Errorf("%s: done %v, err %v; want %v, class %q", tt.name, done, err, tt.done, tt.class)
			continue
		}
		if err != nil && (!strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "p1")) {
			t.Errorf("%s: %v; want %q and the prediction id", tt.name, err, tt.msg)
		}
	}
}

func TestOutputURL(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	for raw, want := range map[string]string{
		`"https://replicate.delivery/a.webp"`:                                     "https://replicate.delivery/a.webp",
		`["https://replicate.delivery/1.png","https://replicate.delivery/2.png"]`: "https://replicate.delivery/1.png",
		`"data:image/png;base64,iVBORw0KGgo="`:                                    "data:image/png;base64,iVBORw0KGgo=",
		`{"url":"https://x"}`:                                                     "",
		`[1]`:                                                                     "",
		`"not a url"`:                                                             "",
	} {
		got, err := c.outputURL(&prediction{ID: "p", Output: json.RawMessage(raw)})
		if got != want || (want == "") != (err != nil) || (err != nil && provider.ClassOf(err) != provider.Transient) {
			t.Errorf("%s: %q, %v; want %q", raw, got, err, want)
		}
	}
}

func TestParseLogs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		logs    string
		seed    int64
		revised string
	}{
		{"Using seed: 98765\nRunning prediction\n", 98765, ""},
		{"Upsampled prompt: a woman playing a grand piano, warm light\nUsing seed: 3\n", 3, "a woman playing a grand piano, warm light"},
		{"Magic prompt: poster of a pianist\n", 0, "poster of a pianist"},
		{"revised_prompt = a pianist\n", 0, "a pianist"},
		{"no seed here\nprompt: just echoing the input\n", 0, ""},
		{"", 0, ""},
	}
	for _, tt := range tests {
		seed, revised := parseLogs(tt.logs)
		if seed != tt.seed || revised != tt.revised {
			t.Errorf("%q: %d %q; want %d %q", tt.logs, seed, revised, tt.seed, tt.revised)
		}
	}
}

func TestTrimLogs(t *testing.T) {
	t.Parallel()
	short := "Using seed: 1\n"
	if trimLogs(short, MaxLogBytes) != short {
		t.Error("short logs changed")
	}
	long := strings.Repeat("é", MaxLogBytes) + "final error line"
	got := trimLogs(long, MaxLogBytes)
	if len(got) > MaxLogBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, "final error line") || !strings.HasPrefix(got, "[...]") {
		t.Errorf("trimmed to %d bytes, valid %v, tail %q", len(got), utf8.ValidString(got), got[len(got)-20:])
	}
	if s := truncate(strings.Repeat("ü", 400), maxMessage); len(s) > maxMessage || !utf8.ValidString(s) {
		t.Errorf("truncate: %d bytes, valid %v", len(s), utf8.ValidString(s))
	}
}

func TestParseTags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want []string
	}{
		{`["consistent-character-generation","image-models","replicate"]`, []string{"consistent-character-generation", "image-models", "replicate"}},
		{`"consistent-character-generation, image-models,replicate"`, []string{"consistent-character-generation", "image-models", "replicate"}},
		{`"[\"a-b\", \"c\"]"`, []string{"a-b", "c"}},
		{`"1. alpha\n2. beta\n- gamma\n#delta\n* \"epsilon\""`, []string{"alpha", "beta", "gamma", "delta", "epsilon"}},
		{`["dup"," dup ","", "x"]`, []string{"dup", "x"}},
	}
	for _, tt := range tests {
		got, err := ParseTags(json.RawMessage(tt.raw))
		if err != nil {
			t.Errorf("%s: %v", tt.raw, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.raw, diff)
		}
	}
	for _, bad := range []string{`null`, `[1,2]`, `{"tags":["a"]}`, `""`, `[]`, `" , ,"`} {
		if got, err := ParseTags(json.RawMessage(bad)); err == nil {
			t.Errorf("%s: %v; want an error", bad, got)
		}
	}
}

func TestInvertMask(t *testing.T) {
	t.Parallel()
	src := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	src.SetNRGBA(0, 0, color.NRGBA{255, 255, 255, 255}) // repaint
	src.SetNRGBA(1, 0, color.NRGBA{0, 0, 0, 255})       // keep
	src.SetNRGBA(2, 0, color.NRGBA{255, 255, 255, 0})   // transparent: keep
	var buf bytes.Buffer
	_ = png.Encode(&buf, src)
	out, err := invertMask(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var got []uint8
	for x := 0; x < 3; x++ {
		got = append(got, color.GrayModel.Convert(img.At(x, 0)).(color.Gray).Y)
	}
	if diff := cmp.Diff([]uint8{0, 255, 255}, got); diff != "" {
		t.Errorf("inverted mask (-want +got):\n%s", diff)
	}
	if _, err := invertMask([]byte("not an image")); err == nil {
		t.Error("decoded garbage")
	}
}

func TestURLs(t *testing.T) {
	t.Parallel()
	c := testClient(t)
	if got := c.endpoint("models", "bytedance", "seededit-3.0", "predictions"); got != "https://api.replicate.com/v1/models/bytedance/seededit-3.0/predictions" {
		t.Errorf("endpoint %s", got)
	}
	if got := c.endpoint("predictions", "a/b c"); got != "https://api.replicate.com/v1/predictions/a%2Fb%20c" {
		t.Errorf("escaped endpoint %s", got)
	}
	fallback := c.endpoint("predictions", "p1")
	for raw, want := range map[string]string{
		"https://api.replicate.com/v1/predictions/p1": "https://api.replicate.com/v1/predictions/p1",
		"https://evil.example/v1/predictions/p1":      fallback, // never send the token elsewhere
		"http://api.replicate.com/v1/predictions/p1":  fallback,
		"": fallback,
	} {
		if got := c.sameHost(raw, fallback); got != want {
			t.Errorf("sameHost(%q) = %q; want %q", raw, got, want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		30 * time.Minute:                      "30m",
		90 * time.Minute:                      "1h30m",
		5 * time.Second:                       "5s",
		2*time.Hour + 3*time.Second:           "2h3s",
		1500 * time.Millisecond:               "2s",
		time.Hour + time.Minute + time.Second: "1h1m1s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%s) = %q; want %q", d, got, want)
		}
	}
}
