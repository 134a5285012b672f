package providertest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf16"
)

// RunwayKey is the API secret the Runway fake accepts as a Bearer token.
const RunwayKey = "key_5b0e9c2d7a4f81e36c9d0b2a4e6f8a1c3d5e7f90b1a2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c"

// RunwayVersion is the X-Runway-Version the fake requires.
const RunwayVersion = "2024-11-06"

// RunwayExpiredOnce is a Runway-only scenario: the task succeeds, the output
// URL in the first SUCCEEDED answer has expired (404), and fetching the task
// again returns a fresh, working URL, as Runway re-issues output URLs.
const RunwayExpiredOnce Scenario = "runway_expired_once"

// RunwayFailed is a Runway-only scenario: the task ends FAILED with the given
// failureCode, e.g. RunwayFailed("SAFETY.OUTPUT.IMAGE").
func RunwayFailed(failureCode string) Scenario { return Scenario("runway_failed:" + failureCode) }

// RunwayFake speaks Runway's API (docs.dev.runwayml.com): POST
// /v1/text_to_image answered with {id}, GET /v1/tasks/{id} walking the task
// through PENDING, THROTTLED and RUNNING to a terminal status, DELETE
// /v1/tasks/{id} cancelling or deleting it. Every SUCCEEDED answer carries a
// freshly issued output URL.
//
// References too large for a data URI go through ephemeral uploads: POST
// /v1/uploads answers a presigned form on the fake's "bucket"
// (/upload-bucket/{id}), which takes the fields and then the file, without
// the key; the runwayUri it names is accepted once the file is there.
//
// Scenarios: OK (SUCCEEDED after PENDING, THROTTLED, RUNNING); RateLimited
// (429 with Retry-After: 7, the daily generation cap); ServerError (503);
// Moderated (FAILED SAFETY.INPUT.TEXT); Billing (400 "not enough credits");
// Unauthorized (401); BadInput (400 with issues); Malformed (200 HTML);
// Slow (the task stays RUNNING until deleted); OutputExpired (every output
// URL answers 404); TaskFailed (FAILED INTERNAL.BAD_OUTPUT.CODE01);
// RunwayExpiredOnce; RunwayFailed(code).
//
// A reference URL Runway could not fetch (an IP address rather than a
// domain, or a host Base.Unfetchable refuses: loopback, private, ...) is
// answered 400 with the issue on referenceImages[i].uri, as Runway does.
//
// Protocol checks (answered with ProtocolError): Bearer RunwayKey,
// X-Runway-Version 2024-11-06 on every request, JSON content type, no
// unknown fields, model gen4_image or gen4_image_turbo, promptText 1..1000
// UTF-16 units, ratio from Runway's list, 0..3 referenceImages (1..3 for
// Turbo), each uri https, runway:// or a JPEG/PNG/WebP data URI of at most 5 MB, tags
// 3..16 letters/digits/underscores starting with a letter and mentioned in
// promptText as @tag, seed 0..4294967295. A data-URI reference with an
// aspect ratio outside 0.5..2 is refused with a 400 as Runway does.
type RunwayFake struct {
	*Base

	mu      sync.Mutex
	seq     int
	files   int
	tasks   map[string]*runwayTask
	uploads map[string]*runwayUpload // by upload id
}

// runwayUpload is one ephemeral upload: started by POST /v1/uploads, done
// once the form with the file was posted to its uploadUrl.
type runwayUpload struct {
	filename string
	fields   map[string]string
	data     []byte
}

type runwayTask struct {
	scenario  Scenario
	seed      int64
	polls     int
	cancelled bool
	deleted   bool
	succeeded int // SUCCEEDED answers given
}

// NewRunway starts a Runway fake; it is closed when the test ends.
func NewRunway(t testing.TB) *RunwayFake {
	t.Helper()
	f := &RunwayFake{Base: NewBase(t), tasks: map[string]*runwayTask{}, uploads: map[string]*runwayUpload{}}
	f.Mux.HandleFunc("POST /v1/uploads", f.startUpload)
	f.Mux.HandleFunc("POST /upload-bucket/{id}", f.finishUpload)
	f.Mux.HandleFunc("POST /v1/text_to_image", f.create)
	f.Mux.HandleFunc("GET /v1/tasks/{id}", f.get)
	f.Mux.HandleFunc("DELETE /v1/tasks/{id}", f.delete)
	return f
}

// Supports reports that Runway has every failure mode of the suite.
func (f *RunwayFake) Supports(Scenario) bool { return true }

// Expire deletes a task as DELETE /v1/tasks/{id} does a finished one (and
// as Runway's retention eventually does): its output is purged and fetching
// it answers 404.
func (f *RunwayFake) Expire(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.tasks[id]; ok {
		t.deleted = true
	}
}

// Uploads returns the bytes of every finished ephemeral upload.
func (f *RunwayFake) Uploads() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]byte
	for _, u := range f.uploads {
		if u.data != nil {
			out = append(out, u.data)
		}
	}
	return out
}

// startUpload is POST /v1/uploads: {filename, type: "ephemeral"} answered
// with a presigned form on the fake's "bucket" and the upload's runway://
// URI.
func (f *RunwayFake) startUpload(w http.ResponseWriter, r *http.Request) {
	if !runwayHeaders(w, r) {
		return
	}
	var body struct {
		Filename *string `json:"filename"`
		Type     *string `json:"type"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		ProtocolError(w, "uploads: request body: %v", err)
		return
	}
	if body.Filename == nil || *body.Filename == "" || body.Type == nil || *body.Type != "ephemeral" {
		ProtocolError(w, "uploads: want {\"filename\": \"...\", \"type\": \"ephemeral\"}")
		return
	}
	f.mu.Lock()
	f.seq++
	id := fmt.Sprintf("9e3d%04x-upload", f.seq)
	up := &runwayUpload{filename: *body.Filename, fields: map[string]string{
		"key": "ephemeral/" + id + "/" + *body.Filename, "policy": "eyJmYWtlIjp0cnVlfQ==", "x-amz-signature": "fake" + id,
	}}
	f.uploads[id] = up
	f.mu.Unlock()
	runwayJSON(w, http.StatusOK, map[string]any{
		"uploadUrl": f.URL() + "/upload-bucket/" + id,
		"fields":    up.fields,
		"runwayUri": "runway://uploads/" + id,
	})
}

// finishUpload is the presigned form post to the object store: every field
// handed out, then the file; no Runway key (the store is not Runway's API).
func (f *RunwayFake) finishUpload(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		ProtocolError(w, "upload form: the Runway key must not go to the upload URL")
		return
	}
	f.mu.Lock()
	up, ok := f.uploads[r.PathValue("id")]
	f.mu.Unlock()
	if !ok {
		http.Error(w, "<Error><Code>AccessDenied</Code></Error>", http.StatusForbidden)
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		ProtocolError(w, "upload form: not multipart/form-data: %v", err)
		return
	}
	got := map[string]string{}
	var data []byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			ProtocolError(w, "upload form: %v", err)
			return
		}
		b, _ := io.ReadAll(p)
		if p.FormName() == "file" {
			data = b
			if _, err := mr.NextPart(); err != io.EOF {
				ProtocolError(w, "upload form: the file must be the last part")
				return
			}
			break
		}
		got[p.FormName()] = string(b)
	}
	for k, v := range up.fields {
		if got[k] != v {
			ProtocolError(w, "upload form: field %q is %q, want %q", k, got[k], v)
			return
		}
	}
	if _, _, err := DecodeSize(data); err != nil {
		ProtocolError(w, "upload form: the file is not an image")
		return
	}
	f.mu.Lock()
	up.data = data
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// uploaded reports whether uri names a finished upload.
func (f *RunwayFake) uploaded(uri string) bool {
	id, ok := strings.CutPrefix(uri, "runway://uploads/")
	f.mu.Lock()
	defer f.mu.Unlock()
	up := f.uploads[id]
	return ok && up != nil && up.data != nil
}

// runwayUnfetchable returns why Runway would refuse a reference URL: not a
// domain (Runway fetches domains only), or a host it cannot reach
// (Base.Unfetchable); "" when it would fetch it.
func (f *RunwayFake) runwayUnfetchable(uri string) string {
	if strings.HasPrefix(uri, "runway://") && !f.uploaded(uri) {
		return "Invalid asset: no finished upload " + uri
	}
	if !strings.HasPrefix(uri, "https://") {
		return ""
	}
	if u, err := url.Parse(uri); err == nil {
		if _, err := netip.ParseAddr(u.Hostname()); err == nil {
			return "Invalid asset URL: must be a domain, not an IP address"
		}
	}
	if why := f.Unfetchable(uri); why != "" {
		return "Failed to fetch asset: " + why
	}
	return ""
}

// runwayRatios are the ratio strings Runway accepts for Gen-4 Image.
func runwayRatios() []string {
	return []string{"1024:1024", "1080:1080", "1168:880", "1360:768", "1440:1080", "1080:1440", "1808:768", "1920:1080", "1080:1920", "2112:912", "1280:720", "720:1280", "720:720", "960:720", "720:960", "1680:720"}
}

var runwayTagRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{2,15}$`)

type runwayCreate struct {
	Model           *string `json:"model"`
	PromptText      *string `json:"promptText"`
	Ratio           *string `json:"ratio"`
	ReferenceImages []struct {
		URI *string `json:"uri"`
		Tag *string `json:"tag"`
	} `json:"referenceImages"`
	Seed              *int64 `json:"seed"`
	ContentModeration *struct {
		PublicFigureThreshold *string `json:"publicFigureThreshold"`
	} `json:"contentModeration"`
}

func (f *RunwayFake) create(w http.ResponseWriter, r *http.Request) {
	if !runwayHeaders(w, r) {
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		ProtocolError(w, "Content-Type %q; want application/json", ct)
		return
	}
	var body runwayCreate
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		ProtocolError(w, "request body: %v", err)
		return
	}
	if msg := checkRunwayCreate(body); msg != "" {
		ProtocolError(w, "%s", msg)
		return
	}
	for i, ref := range body.ReferenceImages {
		if why := f.runwayUnfetchable(*ref.URI); why != "" {
			runwayJSON(w, http.StatusBadRequest, map[string]any{
				"error":  "Validation of body failed",
				"issues": []map[string]any{{"code": "custom", "path": []any{"referenceImages", i, "uri"}, "message": why}},
			})
			return
		}
	}
	if msg := runwayRefAspect(body); msg != "" {
		runwayJSON(w, http.StatusBadRequest, map[string]any{"error": msg})
		return
	}

	sc := f.Next()
	switch sc {
	case RateLimited:
		w.Header().Set("Retry-After", strconv.Itoa(int(RateWait.Seconds())))
		runwayJSON(w, http.StatusTooManyRequests, map[string]any{"error": "You have exceeded the maximum number of generations for this model in a 24-hour period."})
		return
	case ServerError:
		runwayJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "Service unavailable. Please retry with exponential backoff."})
		return
	case Billing:
		runwayJSON(w, http.StatusBadRequest, map[string]any{"error": "You do not have enough credits to run this task."})
		return
	case Unauthorized:
		runwayJSON(w, http.StatusUnauthorized, map[string]any{"error": "Unauthorized. Check your API key."})
		return
	case BadInput:
		runwayJSON(w, http.StatusBadRequest, map[string]any{
			"error":  "Validation of body failed",
			"issues": []map[string]any{{"code": "custom", "path": []any{"referenceImages", 0, "uri"}, "message": "Failed to fetch asset: the image could not be decoded"}},
		})
		return
	case Malformed:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<html><body>Bad gateway</body></html>"))
		return
	}

	f.mu.Lock()
	f.seq++
	id := fmt.Sprintf("5c1a%04x-7d2e-4b8f-a3c6-91e0d4b2%04x", f.seq, f.seq)
	f.tasks[id] = &runwayTask{scenario: sc, seed: *body.Seed}
	f.mu.Unlock()
	runwayJSON(w, http.StatusOK, map[string]any{"id": id})
}

func checkRunwayCreate(b runwayCreate) string {
	if b.Model == nil || (*b.Model != "gen4_image" && *b.Model != "gen4_image_turbo") {
		return "model must be gen4_image or gen4_image_turbo"
	}
	if b.PromptText == nil || *b.PromptText == "" {
		return "promptText is required"
	}
	if n := len(utf16.Encode([]rune(*b.PromptText))); n > 1000 {
		return fmt.Sprintf("promptText is %d UTF-16 units; at most 1000", n)
	}
	if b.Ratio == nil || !slices.Contains(runwayRatios(), *b.Ratio) {
		got := "<missing>"
		if b.Ratio != nil {
			got = *b.Ratio
		}
		return fmt.Sprintf("ratio %q is not one of Runway's sizes", got)
	}
	if len(b.ReferenceImages) > 3 {
		return "at most 3 referenceImages"
	}
	if *b.Model == "gen4_image_turbo" && len(b.ReferenceImages) == 0 {
		return "gen4_image_turbo requires 1..3 referenceImages"
	}
	for i, ref := range b.ReferenceImages {
		if ref.URI == nil {
			return fmt.Sprintf("referenceImages[%d].uri is required", i)
		}
		switch uri := *ref.URI; {
		case strings.HasPrefix(uri, "https://"), strings.HasPrefix(uri, "runway://"):
		case strings.HasPrefix(uri, "data:"):
			if len(uri) > 5_000_000 {
				return fmt.Sprintf("referenceImages[%d]: data URI over 5 MB", i)
			}
			meta, _, _ := strings.Cut(strings.TrimPrefix(uri, "data:"), ",")
			if !slices.Contains([]string{"image/png;base64", "image/jpeg;base64", "image/webp;base64"}, meta) {
				return fmt.Sprintf("referenceImages[%d]: data URI type %q; want a base64 JPEG, PNG or WebP", i, meta)
			}
			if _, err := runwayDataImage(uri); err != nil {
				return fmt.Sprintf("referenceImages[%d]: %v", i, err)
			}
		default:
			return fmt.Sprintf("referenceImages[%d].uri must be an https URL or a data URI", i)
		}
		if ref.Tag != nil {
			tag := *ref.Tag
			if !runwayTagRE.MatchString(tag) {
				return fmt.Sprintf("referenceImages[%d].tag %q: 3..16 letters, digits or underscores, starting with a letter", i, tag)
			}
			if !strings.Contains(*b.PromptText, "@"+tag) {
				return fmt.Sprintf("promptText does not mention @%s, so the reference goes unused", tag)
			}
		}
	}
	if b.Seed == nil || *b.Seed < 0 || *b.Seed > 4294967295 {
		return "seed must be set, in 0..4294967295"
	}
	if b.ContentModeration != nil && b.ContentModeration.PublicFigureThreshold != nil {
		if v := *b.ContentModeration.PublicFigureThreshold; v != "auto" && v != "low" {
			return fmt.Sprintf("contentModeration.publicFigureThreshold %q; want auto or low", v)
		}
	}
	return ""
}

func runwayDataImage(uri string) ([]byte, error) {
	_, payload, _ := strings.Cut(uri, ",")
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return nil, fmt.Errorf("data URI is not base64: %v", err)
	}
	if _, _, err := DecodeSize(data); err != nil {
		return nil, fmt.Errorf("data URI is not an image")
	}
	return data, nil
}

// runwayRefAspect refuses references outside Runway's 0.5..2 aspect bound.
func runwayRefAspect(b runwayCreate) string {
	for i, ref := range b.ReferenceImages {
		if !strings.HasPrefix(*ref.URI, "data:") {
			continue
		}
		data, _ := runwayDataImage(*ref.URI)
		w, h, _ := DecodeSize(data)
		if a := float64(w) / float64(h); a < 0.5 || a > 2 {
			return fmt.Sprintf("referenceImages[%d]: aspect ratio %.2f is outside 0.5..2", i, a)
		}
	}
	return ""
}

func (f *RunwayFake) get(w http.ResponseWriter, r *http.Request) {
	if !runwayHeaders(w, r) {
		return
	}
	id := r.PathValue("id")
	f.mu.Lock()
	t, ok := f.tasks[id]
	if !ok || t.deleted {
		f.mu.Unlock()
		runwayJSON(w, http.StatusNotFound, map[string]any{"error": "Task not found"})
		return
	}
	t.polls++
	resp := map[string]any{"id": id, "createdAt": "2025-07-01T12:00:00.000Z"}
	switch {
	case t.cancelled:
		resp["status"] = "CANCELLED"
	case t.polls == 1:
		resp["status"] = "PENDING"
	case t.polls == 2:
		// Over the tier's concurrency: queued, not failed.
		resp["status"] = "THROTTLED"
	case t.polls == 3 || t.scenario == Slow:
		resp["status"] = "RUNNING"
		resp["progress"] = 0.5
	case t.scenario == Moderated:
		resp["status"], resp["failureCode"] = "FAILED", "SAFETY.INPUT.TEXT"
		resp["failure"] = "The prompt was flagged by our content moderation system."
	case t.scenario == TaskFailed:
		resp["status"], resp["failureCode"] = "FAILED", "INTERNAL.BAD_OUTPUT.CODE01"
		resp["failure"] = "The output did not pass our quality checks. Please try again."
	case strings.HasPrefix(string(t.scenario), "runway_failed:"):
		resp["status"], resp["failureCode"] = "FAILED", strings.TrimPrefix(string(t.scenario), "runway_failed:")
		resp["failure"] = "The task failed."
	default:
		t.succeeded++
		f.files++
		expired := t.scenario == OutputExpired || (t.scenario == RunwayExpiredOnce && t.succeeded == 1)
		seed := t.seed
		name := fmt.Sprintf("runway-%s-%d.png", id, f.files)
		f.mu.Unlock()
		// Runway signs a new URL on every fetch of the task.
		resp["status"], resp["output"] = "SUCCEEDED", []string{f.Host(name, PNG(64, 36, seed), expired)}
		runwayJSON(w, http.StatusOK, resp)
		return
	}
	f.mu.Unlock()
	runwayJSON(w, http.StatusOK, resp)
}

func (f *RunwayFake) delete(w http.ResponseWriter, r *http.Request) {
	if !runwayHeaders(w, r) {
		return
	}
	id := r.PathValue("id")
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tasks[id]
	if !ok || t.deleted {
		runwayJSON(w, http.StatusNotFound, map[string]any{"error": "Task not found"})
		return
	}
	// Running tasks are cancelled; finished ones are deleted.
	if t.scenario == Slow || t.polls < 4 {
		t.cancelled = true
	} else {
		t.deleted = true
	}
	w.WriteHeader(http.StatusNoContent)
}

// runwayHeaders checks the auth and version headers every request needs.
func runwayHeaders(w http.ResponseWriter, r *http.Request) bool {
	switch k := BearerKey(r); {
	case k == "":
		ProtocolError(w, "missing Authorization: Bearer header")
		return false
	case k != RunwayKey:
		ProtocolError(w, "bearer token is not the fake's key")
		return false
	}
	if v := r.Header.Get("X-Runway-Version"); v != RunwayVersion {
		ProtocolError(w, "X-Runway-Version %q; want %s", v, RunwayVersion)
		return false
	}
	return true
}

func runwayJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
