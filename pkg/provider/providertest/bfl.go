package providertest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// BFLKey is the API key the BFL fake accepts in the x-key header.
const BFLKey = "bfl_fake_2f6c0d9a41e84b7c9d3e5a17b0c2f4e6"

// BFLStatus is a BFL-only scenario: the task is accepted and its poll ends
// with the given get_result status instead of Ready, e.g.
// BFLStatus("Content Moderated") or BFLStatus("Task not found").
func BFLStatus(status string) Scenario { return Scenario("bfl_status:" + status) }

// BFLFake speaks the Black Forest Labs API (docs.bfl.ai): POST
// /v1/flux-kontext-{pro,max} with an x-key header and a JSON body, answered
// with {id, polling_url}; GET polling_url answers {id, status, result}.
//
// Like BFL's global endpoint, which routes tasks to regional clusters, the
// polling_url points at a second loopback host (the "cluster"); the main
// host's /v1/get_result does not know the task and answers "Task not found".
// A client that builds the poll URL itself instead of following polling_url
// therefore fails every request.
//
// Scenarios: OK (Pending, then Ready with a hosted PNG); RateLimited (429,
// Retry-After: 7 and the integration guide's body with retry_after 7);
// ServerError (503); Moderated (poll ends "Request Moderated"); Billing (402);
// Unauthorized (403 "Not authenticated"); BadInput (422 FastAPI validation
// body); Malformed (200 with an HTML body); Slow (submit held until the
// client gives up); OutputExpired (Ready, but result.sample answers 404);
// TaskFailed (poll ends "Error"); and BFLStatus(...).
//
// An input_image URL BFL could not fetch (Base.Unfetchable: loopback,
// private or otherwise non-public) is answered 422 with a FastAPI
// validation body, as BFL answers an input it cannot download.
//
// Protocol checks (answered with ProtocolError): x-key equal to BFLKey, JSON
// content type, no unknown fields, non-empty prompt, input_image a URL or
// base64 of an image, safety_tolerance at most 2 with an input image (6
// without), output_format one of jpeg/png/webp, aspect_ratio "W:H" between
// 21:9 and 9:21, polls carrying x-key.
type BFLFake struct {
	*Base
	cluster *httptest.Server

	mu    sync.Mutex
	seq   int
	tasks map[string]*bflTask
}

type bflTask struct {
	scenario Scenario
	model    string
	prompt   string
	seed     int64
	polls    int
	w, h     int  // output size: the asked aspect ratio, else the input's
	expired  bool // result.sample has outlived its ten minutes
}

// Expire makes a task's result.sample answer 404 from now on, as BFL's
// signed result URLs do about ten minutes after the task is Ready; polling
// the task still answers Ready with that URL.
func (f *BFLFake) Expire(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.tasks[id]; ok {
		t.expired = true
	}
}

// NewBFL starts a BFL fake (two loopback hosts); it is closed when the test
// ends.
func NewBFL(t testing.TB) *BFLFake {
	t.Helper()
	f := &BFLFake{Base: NewBase(t), tasks: map[string]*bflTask{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The cluster host shares the Base handler, so its requests are
	// recorded with the others.
	f.cluster = &httptest.Server{Listener: l, Config: &http.Server{Handler: f.Base}}
	f.cluster.Start()
	t.Cleanup(f.cluster.Close)
	f.Mux.HandleFunc("POST /v1/{endpoint}", f.create)
	f.Mux.HandleFunc("GET /v1/get_result", f.result)
	return f
}

// URL is the base URL to configure the adapter with: the API root including
// "/v1", as bfl.DefaultBaseURL is.
func (f *BFLFake) URL() string { return f.Base.URL() + "/v1" }

// ClusterURL is the root of the host polling URLs point at.
func (f *BFLFake) ClusterURL() string { return f.cluster.URL }

// Supports reports that BFL has every failure mode of the suite.
func (f *BFLFake) Supports(Scenario) bool { return true }

// bflCreate mirrors the documented request fields; unknown fields are a
// protocol error.
type bflCreate struct {
	Prompt           *string  `json:"prompt"`
	InputImage       *string  `json:"input_image"`
	InputImage2      *string  `json:"input_image_2"`
	InputImage3      *string  `json:"input_image_3"`
	InputImage4      *string  `json:"input_image_4"`
	Seed             *int64   `json:"seed"`
	AspectRatio      *string  `json:"aspect_ratio"`
	OutputFormat     *string  `json:"output_format"`
	SafetyTolerance  *float64 `json:"safety_tolerance"`
	PromptUpsampling *bool    `json:"prompt_upsampling"`
	WebhookURL       *string  `json:"webhook_url"`
	WebhookSecret    *string  `json:"webhook_secret"`
}

func (f *BFLFake) create(w http.ResponseWriter, r *http.Request) {
	endpoint := r.PathValue("endpoint")
	if endpoint != "flux-kontext-pro" && endpoint != "flux-kontext-max" {
		bflJSON(w, http.StatusNotFound, `{"detail":"Not Found"}`)
		return
	}
	if !f.checkKey(w, r) {
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		ProtocolError(w, "Content-Type %q; want application/json", ct)
		return
	}
	var body bflCreate
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		ProtocolError(w, "request body: %v", err)
		return
	}
	if msg := checkBFLCreate(body); msg != "" {
		ProtocolError(w, "%s", msg)
		return
	}
	for i, img := range []*string{body.InputImage, body.InputImage2, body.InputImage3, body.InputImage4} {
		if img == nil {
			continue
		}
		if why := f.Unfetchable(*img); why != "" {
			field := "input_image"
			if i > 0 {
				field += fmt.Sprintf("_%d", i+1)
			}
			out, _ := json.Marshal(map[string]any{"detail": []map[string]any{{"loc": []string{"body", field}, "msg": "Failed to fetch image: " + why, "type": "value_error"}}})
			bflJSON(w, http.StatusUnprocessableEntity, string(out))
			return
		}
	}

	sc := f.Next()
	switch sc {
	case RateLimited:
		w.Header().Set("Retry-After", strconv.Itoa(int(RateWait.Seconds())))
		w.Header().Set("X-RateLimit-Limit", "24")
		w.Header().Set("X-RateLimit-Remaining", "0")
		bflJSON(w, http.StatusTooManyRequests, fmt.Sprintf(`{"error":"rate_limit_exceeded","message":"Too many concurrent requests","retry_after":%d}`, int(RateWait.Seconds())))
		return
	case ServerError:
		bflJSON(w, http.StatusServiceUnavailable, `{"detail":"Service Unavailable"}`)
		return
	case Billing:
		bflJSON(w, http.StatusPaymentRequired, `{"detail":"Insufficient credits. Add credits to your account at https://dashboard.bfl.ai"}`)
		return
	case Unauthorized:
		bflJSON(w, http.StatusForbidden, `{"detail":"Not authenticated - Invalid Authentication"}`)
		return
	case BadInput:
		bflJSON(w, http.StatusUnprocessableEntity, `{"detail":[{"loc":["body","aspect_ratio"],"msg":"Aspect ratio must be between 21:9 and 9:21","type":"value_error"}]}`)
		return
	case Malformed:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<html><body>502 upstream hiccup</body></html>"))
		return
	case Slow:
		Hold(w, r)
		return
	}

	f.mu.Lock()
	f.seq++
	id := fmt.Sprintf("0b8f%04d-6c1e-4d7a-9f3b-5e2a1c7d%04d", f.seq, f.seq)
	seed := int64(0)
	if body.Seed != nil {
		seed = *body.Seed
	}
	ar := ""
	if body.AspectRatio != nil {
		ar = *body.AspectRatio
	}
	var input []byte
	if body.InputImage != nil {
		input, _ = base64.StdEncoding.DecodeString(*body.InputImage)
	}
	ow, oh := OutputSize(ar, input)
	f.tasks[id] = &bflTask{scenario: sc, model: endpoint, prompt: *body.Prompt, seed: seed, w: ow, h: oh}
	f.mu.Unlock()

	cost := 4
	if endpoint == "flux-kontext-max" {
		cost = 8
	}
	resp, _ := json.Marshal(map[string]any{
		"id":          id,
		"polling_url": f.cluster.URL + "/v1/get_result?id=" + id,
		"cost":        cost,
		"input_mp":    0.01,
		"output_mp":   1.0,
	})
	bflJSON(w, http.StatusOK, string(resp))
}

func checkBFLCreate(b bflCreate) string {
	if b.Prompt == nil || strings.TrimSpace(*b.Prompt) == "" {
		return "prompt is required"
	}
	hasImage := false
	for i, img := range []*string{b.InputImage, b.InputImage2, b.InputImage3, b.InputImage4} {
		if img == nil || *img == "" {
			continue
		}
		hasImage = true
		if strings.HasPrefix(*img, "https://") || strings.HasPrefix(*img, "http://") {
			continue
		}
		data, err := base64.StdEncoding.DecodeString(*img)
		if err != nil {
			return fmt.Sprintf("input image %d is neither a URL nor base64: %v", i+1, err)
		}
		if _, _, err := DecodeSize(data); err != nil {
			return fmt.Sprintf("input image %d: base64 does not decode to an image", i+1)
		}
	}
	if b.SafetyTolerance != nil {
		st := *b.SafetyTolerance
		limit := 6.0
		if hasImage {
			limit = 2
		}
		if st < 0 || st > limit || st != float64(int(st)) {
			return fmt.Sprintf("safety_tolerance %v out of range 0..%v (2 is the maximum with an input image)", st, limit)
		}
	}
	if b.OutputFormat != nil {
		switch *b.OutputFormat {
		case "jpeg", "png", "webp":
		default:
			return fmt.Sprintf("output_format %q; want jpeg, png or webp", *b.OutputFormat)
		}
	}
	if b.AspectRatio != nil {
		w, h, ok := bflParseRatio(*b.AspectRatio)
		if !ok || w*9 > h*21 || h*9 > w*21 {
			return fmt.Sprintf("aspect_ratio %q; want W:H between 21:9 and 9:21", *b.AspectRatio)
		}
	}
	if b.Seed != nil && *b.Seed < 0 {
		return "seed must be non-negative"
	}
	return ""
}

func bflParseRatio(s string) (int, int, bool) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return 0, 0, false
	}
	return w, h, true
}

func (f *BFLFake) result(w http.ResponseWriter, r *http.Request) {
	if !f.checkKey(w, r) {
		return
	}
	id := r.URL.Query().Get("id")
	f.mu.Lock()
	task, ok := f.tasks[id]
	onCluster := r.Host == strings.TrimPrefix(f.cluster.URL, "http://")
	if ok && onCluster {
		task.polls++
	}
	var polls int
	if ok {
		polls = task.polls
	}
	f.mu.Unlock()
	if !ok || !onCluster {
		// The global host does not hold tasks routed to a cluster.
		bflJSON(w, http.StatusOK, fmt.Sprintf(`{"id":%q,"status":"Task not found","result":null,"progress":null,"details":null,"preview":null}`, id))
		return
	}
	if polls == 1 {
		bflJSON(w, http.StatusOK, fmt.Sprintf(`{"id":%q,"status":"Pending","result":null,"progress":0.4,"details":null,"preview":null}`, id))
		return
	}

	status := "Ready"
	var details any
	switch sc := task.scenario; {
	case sc == Moderated:
		status = "Request Moderated"
	case sc == TaskFailed:
		status = "Error"
	case strings.HasPrefix(string(sc), "bfl_status:"):
		status = strings.TrimPrefix(string(sc), "bfl_status:")
	}
	switch status {
	case "Request Moderated", "Content Moderated":
		details = map[string]any{"Moderation Reasons": []string{"Derivative Works Filter"}}
	case "Error", "Failed":
		details = map[string]any{"error": "generation failed, please retry"}
	}
	resp := map[string]any{"id": id, "status": status, "result": nil, "progress": nil, "details": details, "preview": nil}
	if status == "Ready" {
		url := f.Host("bfl-"+id+".png", PNG(task.w, task.h, task.seed), task.scenario == OutputExpired || task.expired)
		resp["result"] = map[string]any{
			"sample": url, "prompt": task.prompt, "seed": task.seed,
			"start_time": 1751300000.1, "end_time": 1751300004.9, "duration": 4.8,
		}
		resp["progress"] = 1.0
	}
	out, _ := json.Marshal(resp)
	bflJSON(w, http.StatusOK, string(out))
}

// checkKey answers a missing or wrong x-key as a protocol error.
func (f *BFLFake) checkKey(w http.ResponseWriter, r *http.Request) bool {
	switch k := r.Header.Get("x-key"); {
	case k == "":
		ProtocolError(w, "missing x-key header")
		return false
	case k != BFLKey:
		ProtocolError(w, "x-key is not the fake's key")
		return false
	}
	if r.Header.Get("Authorization") != "" {
		ProtocolError(w, "BFL authenticates with x-key, not Authorization")
		return false
	}
	return true
}

func bflJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
