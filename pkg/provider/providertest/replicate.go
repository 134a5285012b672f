package providertest

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/likeness-run/likeness/pkg/provider"
)

// ReplicateToken is the API token the Replicate fake accepts.
const ReplicateToken = "r8_fake_0123456789abcdefghijklmnopqrstuv"

// ReplicateFake speaks Replicate's prediction API (shared/providers.md,
// section 1) for the models likeness uses: create on the official-model
// endpoint, poll, cancel, and file uploads.
//
// Predictions are async by default: create answers 201 "starting" with
// urls.get, the first poll answers "processing", the next the outcome. With
// Sync(true), a create that sent "Prefer: wait" answers 201 with the output
// (a data: URI) already present while the status is still "processing", as
// Replicate's sync mode does for file outputs. With RunTime(d), predictions
// stay "processing" until d after creation.
//
// The fake checks what the client sends and answers a protocol mistake with
// ProtocolError: the Bearer token (a wrong one gets Replicate's 401), the
// create path shape, a JSON content type, a non-empty input.prompt (input.text
// for topic-tags), the model's reference field holding a data: (at most
// 256 KiB, decodable image) or http(s) URL, the Prefer and Cancel-After
// header formats, the seed range, Kontext's safety_tolerance cap with an
// input image, Runway's tag rules and @tag mention, gpt-image-1's
// openai_api_key, and Ideogram's image/mask pairing.
type ReplicateFake struct {
	*Base

	mu       sync.Mutex
	preds    map[string]*replicatePred
	seq      int
	sync     bool
	runTime  time.Duration
	uploads  int
	canceled []string
}

// replicatePred is one prediction the fake holds.
type replicatePred struct {
	id, model string
	scenario  Scenario
	input     map[string]any
	created   time.Time
	status    string
	output    any
	err       string
	logs      string
	removed   bool      // inputs and outputs deleted (data retention)
	completed time.Time // when it ended, as Replicate's completed_at says
}

// replicateModel is what the fake knows of a model's input.
type replicateModel struct {
	textField string // "prompt", or "text" for topic-tags
	refField  string // reference image field, "" for none
	refArray  bool   // the reference field is an array of URIs
	outArray  bool   // the output is an array of URIs
	text      bool   // a text model (output: tags)
	check     func(in map[string]any) error
}

var replicateModels = map[string]replicateModel{
	"black-forest-labs/flux-kontext-pro": {textField: "prompt", refField: "input_image", check: replicateCheckKontext},
	"black-forest-labs/flux-kontext-max": {textField: "prompt", refField: "input_image", check: replicateCheckKontext},
	"black-forest-labs/flux-kontext-dev": {textField: "prompt", refField: "input_image"},
	"ideogram-ai/ideogram-character":     {textField: "prompt", refField: "character_reference_image", check: replicateCheckInpaint},
	"runwayml/gen4-image":                {textField: "prompt", refField: "reference_images", refArray: true, check: replicateCheckTags},
	"runwayml/gen4-image-turbo":          {textField: "prompt", refField: "reference_images", refArray: true, check: replicateCheckTags},
	"bytedance/seededit-3.0":             {textField: "prompt", refField: "image"},
	"openai/gpt-image-1":                 {textField: "prompt", refField: "input_images", refArray: true, outArray: true, check: replicateCheckOpenAIKey},
	"intelligent-utilities/topic-tags":   {textField: "text", text: true, check: replicateCheckTopicTags},
}

var (
	replicatePrefer      = regexp.MustCompile(`^wait(=([1-9]|[1-9][0-9]|60))?$`)
	replicateCancelAfter = regexp.MustCompile(`^(?:(\d+)|(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?)$`)
	replicateTagRule     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{2,14}$`)
)

// NewReplicate starts a Replicate fake for one test.
func NewReplicate(t testing.TB) *ReplicateFake {
	t.Helper()
	f := &ReplicateFake{Base: NewBase(t), preds: map[string]*replicatePred{}}
	f.Mux.HandleFunc("POST /models/{owner}/{name}/predictions", f.create)
	f.Mux.HandleFunc("GET /predictions/{id}", f.get)
	f.Mux.HandleFunc("POST /predictions/{id}/cancel", f.cancel)
	f.Mux.HandleFunc("POST /files", f.upload)
	return f
}

// Supports reports true: Replicate has every failure mode of the suite.
func (f *ReplicateFake) Supports(Scenario) bool { return true }

// Sync makes OK predictions finish within a create that sent "Prefer: wait".
func (f *ReplicateFake) Sync(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sync = on
}

// RunTime makes predictions stay "processing" until d after creation.
func (f *ReplicateFake) RunTime(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runTime = d
}

// Uploads counts POST /files requests that stored a file.
func (f *ReplicateFake) Uploads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.uploads
}

// Canceled lists the ids of predictions canceled through the API.
func (f *ReplicateFake) Canceled() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.canceled...)
}

// Expire removes a prediction's inputs and outputs as Replicate's data
// retention does an hour after completion: the prediction still answers,
// with output null and data_removed true, and its output URL answers 404.
func (f *ReplicateFake) Expire(id string) {
	f.mu.Lock()
	p, ok := f.preds[id]
	if ok {
		p.removed = true
	}
	f.mu.Unlock()
	if ok {
		f.ExpireFile("out-" + id + ".png")
	}
}

// unfetchable returns why Replicate could not download one of the URLs in
// an input, or "".
func (f *ReplicateFake) unfetchable(in map[string]any) string {
	for k, v := range in {
		vals, ok := v.([]any)
		if !ok {
			vals = []any{v}
		}
		for _, e := range vals {
			if s, ok := e.(string); ok {
				if why := f.Unfetchable(s); why != "" {
					return fmt.Sprintf("- input.%s: %s", k, why)
				}
			}
		}
	}
	return ""
}

// authorized answers Replicate's 401 unless the request carries the token.
func (f *ReplicateFake) authorized(w http.ResponseWriter, r *http.Request) bool {
	if BearerKey(r) == ReplicateToken {
		return true
	}
	replicateProblem(w, http.StatusUnauthorized, "Unauthenticated", "You did not pass a valid authentication token")
	return false
}

func (f *ReplicateFake) create(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	model := r.PathValue("owner") + "/" + r.PathValue("name")
	spec, ok := replicateModels[model]
	if !ok {
		replicateProblem(w, http.StatusNotFound, "Not found", "The requested model does not exist: "+model)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		ProtocolError(w, "create: Content-Type %q, want application/json", ct)
		return
	}
	prefer := r.Header.Get("Prefer")
	if prefer != "" && !replicateValidPrefer(prefer) {
		ProtocolError(w, "Prefer %q: want wait or wait=N with N in 1..60 (%s)", prefer, replicatePrefer)
		return
	}
	if ca := r.Header.Get("Cancel-After"); ca != "" && !replicateValidCancelAfter(ca) {
		ProtocolError(w, "Cancel-After %q is not a duration of at least 5s (30s, 5m, 1h30m or seconds)", ca)
		return
	}
	var body struct {
		Input map[string]any `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Input == nil {
		ProtocolError(w, "create: body is not {\"input\": {...}}: %v", err)
		return
	}
	if err := spec.validate(body.Input); err != nil {
		ProtocolError(w, "%s: %v", model, err)
		return
	}
	if why := f.unfetchable(body.Input); why != "" {
		replicateProblem(w, http.StatusUnprocessableEntity, "Input validation failed", why)
		return
	}

	sc := f.Next()
	switch sc {
	case RateLimited:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, `{"detail":"Request was throttled. Your rate limit resets in ~%ds.","status":429,"retry_after":%d}`,
			int(RateWait.Seconds()), int(RateWait.Seconds()))
		return
	case ServerError:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprint(w, "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>")
		return
	case Billing:
		replicateProblem(w, http.StatusPaymentRequired, "Insufficient credit",
			"You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, please wait a few minutes before trying again.")
		return
	case Unauthorized:
		replicateProblem(w, http.StatusUnauthorized, "Unauthenticated", "You did not pass a valid authentication token")
		return
	case BadInput:
		replicateProblem(w, http.StatusUnprocessableEntity, "Input validation failed",
			"- input.aspect_ratio: aspect_ratio must be one of the following: \"1:1\", \"16:9\"")
		return
	case Malformed:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"id":"x9k2","status":"starting","urls":{"get":`)
		return
	case Slow:
		Hold(w, r)
		return
	}

	f.mu.Lock()
	f.seq++
	p := &replicatePred{
		id: fmt.Sprintf("fk%024d", f.seq), model: model, scenario: sc, input: body.Input,
		created: time.Now(), status: "starting",
	}
	f.preds[p.id] = p
	status := http.StatusCreated
	if sc == OK && f.sync && prefer != "" {
		f.finish(p, spec, true)
		if !spec.text {
			p.status = "processing" // files exist before the status catches up
		}
	} else if prefer != "" {
		status = http.StatusAccepted // held, but not all outputs are ready
	}
	out := f.render(p)
	f.mu.Unlock()
	replicateJSON(w, status, out)
}

func (f *ReplicateFake) get(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	f.mu.Lock()
	p, ok := f.preds[r.PathValue("id")]
	if !ok {
		f.mu.Unlock()
		replicateProblem(w, http.StatusNotFound, "Not found", "Not found.")
		return
	}
	switch p.status {
	case "starting":
		p.status = "processing"
	case "processing":
		if f.runTime == 0 || time.Since(p.created) >= f.runTime {
			// It ended when its run time was up, not when it was polled.
			p.completed = p.created.Add(f.runTime)
			f.finish(p, replicateModels[p.model], false)
		}
	}
	out := f.render(p)
	f.mu.Unlock()
	replicateJSON(w, http.StatusOK, out)
}

func (f *ReplicateFake) cancel(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	f.mu.Lock()
	p, ok := f.preds[r.PathValue("id")]
	if !ok {
		f.mu.Unlock()
		replicateProblem(w, http.StatusNotFound, "Not found", "Not found.")
		return
	}
	f.canceled = append(f.canceled, p.id)
	if p.status == "starting" || p.status == "processing" {
		p.status = "canceled"
	}
	out := f.render(p)
	f.mu.Unlock()
	replicateJSON(w, http.StatusOK, out)
}

// upload implements POST /files.
func (f *ReplicateFake) upload(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(w, r) {
		return
	}
	if err := r.ParseMultipartForm(32 << 20); err != nil {
		ProtocolError(w, "files: not multipart/form-data: %v", err)
		return
	}
	file, hdr, err := r.FormFile("content")
	if err != nil {
		ProtocolError(w, "files: no \"content\" file part: %v", err)
		return
	}
	defer file.Close()
	data, err := io.ReadAll(file)
	if err != nil {
		ProtocolError(w, "files: reading the content part: %v", err)
		return
	}
	sniffed := http.DetectContentType(data)
	ct := hdr.Header.Get("Content-Type")
	switch {
	case hdr.Filename == "":
		ProtocolError(w, "files: the content part has no filename")
		return
	case !strings.HasPrefix(ct, "image/") || ct != sniffed:
		ProtocolError(w, "files: content part type %q, want the image's type %q", ct, sniffed)
		return
	case r.FormValue("type") != sniffed:
		ProtocolError(w, "files: type field %q, want %q", r.FormValue("type"), sniffed)
		return
	case r.FormValue("filename") == "" || len(r.FormValue("filename")) > 255:
		ProtocolError(w, "files: filename field must be 1..255 bytes")
		return
	}
	if _, _, err := DecodeSize(data); err != nil {
		ProtocolError(w, "files: content is not a decodable image")
		return
	}
	f.mu.Lock()
	f.uploads++
	id := fmt.Sprintf("upload%04d", f.uploads)
	f.mu.Unlock()
	get := f.Host(id, data, false)
	now := time.Now().UTC()
	replicateJSON(w, http.StatusCreated, map[string]any{
		"id": id, "name": r.FormValue("filename"), "content_type": sniffed, "size": len(data),
		"metadata": map[string]any{}, "created_at": now.Format(time.RFC3339Nano),
		"expires_at": now.Add(24 * time.Hour).Format(time.RFC3339Nano),
		"urls":       map[string]string{"get": get},
	})
}

// finish ends p by its scenario. Called with f.mu held.
func (f *ReplicateFake) finish(p *replicatePred, spec replicateModel, dataURI bool) {
	switch p.scenario {
	case Moderated:
		p.status = "failed"
		p.err = "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
		return
	case TaskFailed:
		p.status = "failed"
		p.err = "E1000 unknown error"
		return
	}
	p.status = "succeeded"
	seed, hasSeed := p.input["seed"].(float64)
	if hasSeed {
		p.logs = fmt.Sprintf("Using seed: %d\nRunning prediction\n", int64(seed))
	} else {
		p.logs = "Running prediction\n"
	}
	if spec.text {
		p.output = replicateFakeTags(p.input)
		return
	}
	img := PNG(64, 48, int64(seed))
	var out string
	if dataURI {
		out = provider.DataURI(img)
	} else {
		// Base.Host takes b.mu, not f.mu.
		out = f.Host("out-"+p.id+".png", img, p.scenario == OutputExpired)
	}
	if spec.outArray {
		p.output = []string{out}
	} else {
		p.output = out
	}
}

// render is a prediction as Replicate returns it. Called with f.mu held.
func (f *ReplicateFake) render(p *replicatePred) map[string]any {
	base := f.URL()
	out := map[string]any{
		"id": p.id, "model": p.model, "version": "hidden", "input": p.input,
		"logs": p.logs, "output": p.output, "error": nil, "status": p.status,
		"source": "api", "data_removed": p.removed,
		"created_at": p.created.UTC().Format(time.RFC3339Nano),
		"urls": map[string]string{
			"get":    base + "/predictions/" + p.id,
			"cancel": base + "/predictions/" + p.id + "/cancel",
			"web":    "https://replicate.com/p/" + p.id,
		},
	}
	if p.err != "" {
		out["error"] = p.err
	}
	if p.removed {
		out["input"], out["output"], out["logs"] = nil, nil, ""
	}
	switch p.status {
	case "succeeded", "failed", "canceled":
		completed := p.completed
		if completed.IsZero() || completed.Before(p.created) {
			completed = time.Now()
		}
		out["completed_at"] = completed.UTC().Format(time.RFC3339Nano)
		out["metrics"] = map[string]any{"predict_time": 0.01, "total_time": completed.Sub(p.created).Seconds()}
	}
	return out
}

// validate checks an input against what the model accepts.
func (m replicateModel) validate(in map[string]any) error {
	if s, _ := in[m.textField].(string); strings.TrimSpace(s) == "" {
		return fmt.Errorf("input.%s must be a non-empty string", m.textField)
	}
	if m.refField != "" {
		v, ok := in[m.refField]
		if !ok {
			return fmt.Errorf("input.%s (the reference) is missing", m.refField)
		}
		if m.refArray {
			arr, ok := v.([]any)
			if !ok || len(arr) == 0 {
				return fmt.Errorf("input.%s must be a non-empty array of URIs", m.refField)
			}
			for i, e := range arr {
				if err := replicateCheckFileURI(e); err != nil {
					return fmt.Errorf("input.%s[%d]: %v", m.refField, i, err)
				}
			}
		} else if err := replicateCheckFileURI(v); err != nil {
			return fmt.Errorf("input.%s: %v", m.refField, err)
		}
	}
	if v, ok := in["seed"]; ok {
		n, ok := v.(float64)
		if !ok || n != math.Trunc(n) || n < 0 || n > 2147483647 {
			return fmt.Errorf("input.seed %v is not an integer in 0..2147483647", v)
		}
	}
	if m.check != nil {
		return m.check(in)
	}
	return nil
}

// replicateCheckFileURI accepts an http(s) URL or a base64 data: URI of a decodable
// image of at most 256 KiB.
func replicateCheckFileURI(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("want a URI string, got %T", v)
	}
	switch {
	case strings.HasPrefix(s, "https://"), strings.HasPrefix(s, "http://"):
		return nil
	case strings.HasPrefix(s, "data:"):
		data, err := provider.DecodeDataURI(s)
		if err != nil {
			return err
		}
		if len(data) > 256<<10 {
			return fmt.Errorf("data URI of %d bytes; files over 256 KiB must be URLs (upload via /files)", len(data))
		}
		if _, _, err := DecodeSize(data); err != nil {
			return fmt.Errorf("data URI is not an image")
		}
		return nil
	}
	return fmt.Errorf("%.40q is neither an http(s) URL nor a data: URI", s)
}

func replicateCheckKontext(in map[string]any) error {
	if v, ok := in["safety_tolerance"].(float64); ok && v > 2 {
		return fmt.Errorf("safety_tolerance %v: 2 is the maximum allowed when input images are used", v)
	}
	return nil
}

func replicateCheckInpaint(in map[string]any) error {
	_, img := in["image"]
	_, mask := in["mask"]
	if img != mask {
		return fmt.Errorf("image and mask must be given together")
	}
	if img {
		if err := replicateCheckFileURI(in["image"]); err != nil {
			return fmt.Errorf("input.image: %v", err)
		}
		if err := replicateCheckFileURI(in["mask"]); err != nil {
			return fmt.Errorf("input.mask: %v", err)
		}
	}
	return nil
}

func replicateCheckTags(in map[string]any) error {
	tags, _ := in["reference_tags"].([]any)
	imgs, _ := in["reference_images"].([]any)
	if len(tags) != len(imgs) {
		return fmt.Errorf("%d reference_tags for %d reference_images", len(tags), len(imgs))
	}
	prompt, _ := in["prompt"].(string)
	for _, t := range tags {
		s, _ := t.(string)
		if !replicateTagRule.MatchString(s) {
			return fmt.Errorf("reference tag %q: tags are alphanumeric, start with a letter, 3..15 characters", s)
		}
		if !strings.Contains(prompt, "@"+s) {
			return fmt.Errorf("the prompt never mentions @%s, so the reference is unused", s)
		}
	}
	return nil
}

func replicateCheckOpenAIKey(in map[string]any) error {
	if k, _ := in["openai_api_key"].(string); k == "" {
		return fmt.Errorf("input.openai_api_key is required")
	}
	if n, ok := in["number_of_images"]; ok && n != float64(1) {
		return fmt.Errorf("number_of_images %v; likeness asks for one image", n)
	}
	return nil
}

func replicateCheckTopicTags(in map[string]any) error {
	if v, ok := in["number_of_tags"]; ok {
		n, ok := v.(float64)
		if !ok || n != math.Trunc(n) || n < 1 || n > 50 {
			return fmt.Errorf("number_of_tags %v is not an integer in 1..50", v)
		}
	}
	return nil
}

// replicateFakeTags derives topic tags from the input text: its distinct lower-case
// words, as many as number_of_tags asks (default 5).
func replicateFakeTags(in map[string]any) []string {
	text, _ := in["text"].(string)
	n := 5
	if v, ok := in["number_of_tags"].(float64); ok {
		n = int(v)
	}
	var tags []string
	seen := map[string]bool{}
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && r != '-' }) {
		if len(tags) == n {
			break
		}
		if !seen[w] {
			seen[w] = true
			tags = append(tags, w)
		}
	}
	return tags
}

// replicateValidPrefer accepts what Replicate's pattern does, and also
// checks the documented 1..60 range (the pattern alone lets 61..99 through).
func replicateValidPrefer(v string) bool {
	m := replicatePrefer.FindStringSubmatch(v)
	if m == nil {
		return false
	}
	n, err := strconv.Atoi(m[2])
	return m[2] == "" || err == nil && n >= 1 && n <= 60
}

// replicateValidCancelAfter accepts "30s", "5m", "1h30m" or bare seconds,
// at least 5 s.
func replicateValidCancelAfter(v string) bool {
	m := replicateCancelAfter.FindStringSubmatch(v)
	if m == nil || v == "" {
		return false
	}
	num := func(s string) int {
		n, _ := strconv.Atoi(s)
		return n
	}
	secs := num(m[1]) + num(m[2])*3600 + num(m[3])*60 + num(m[4])
	return secs >= 5
}

// replicateProblem writes Replicate's problem+json error body.
func replicateProblem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"title": title, "detail": detail, "status": status})
}

func replicateJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
