package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/likeness-run/likeness/pkg/provider"
)

// srvClock is a settable clock for ServerConfig.Now.
type srvClock struct {
	mu sync.Mutex
	t  time.Time
}

func newSrvClock() *srvClock {
	return &srvClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *srvClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *srvClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// srvEnv is a Server behind an httptest server on 127.0.0.1.
type srvEnv struct {
	t     testing.TB
	srv   *Server
	http  *httptest.Server
	token string
	ref   []byte // a PNG reference
}

// newSrvEnv starts a Server for cfg. Token defaults to "r8_test".
func newSrvEnv(t testing.TB, cfg ServerConfig) *srvEnv {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = "r8_test"
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &srvEnv{t: t, srv: srv, http: ts, token: cfg.Token, ref: srvReference(t, 96, 128)}
}

// srvReference is a small portrait-like PNG: a gradient with a face-like
// disc, so outputs are not blank.
func srvReference(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			c := color.NRGBA{uint8(40 + x*150/w), uint8(90 + y*100/h), 140, 255}
			if dx, dy := x-w/2, y-h*2/5; dx*dx+dy*dy < (w/4)*(w/4) {
				c = color.NRGBA{225, 175, 140, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// apiPrediction is the prediction object as a Replicate client reads it.
type apiPrediction struct {
	ID          string             `json:"id"`
	Model       string             `json:"model"`
	Version     string             `json:"version"`
	Input       map[string]any     `json:"input"`
	Logs        string             `json:"logs"`
	Output      any                `json:"output"`
	DataRemoved bool               `json:"data_removed"`
	Error       *string            `json:"error"`
	Status      string             `json:"status"`
	CreatedAt   string             `json:"created_at"`
	StartedAt   *string            `json:"started_at"`
	CompletedAt *string            `json:"completed_at"`
	Deadline    string             `json:"deadline"`
	Metrics     map[string]float64 `json:"metrics"`
	URLs        map[string]string  `json:"urls"`
}

type srvResponse struct {
	code   int
	header http.Header
	body   []byte
}

func (r srvResponse) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d response %q: %v", r.code, r.body, err)
	}
}

func (r srvResponse) prediction(t testing.TB) apiPrediction {
	t.Helper()
	var p apiPrediction
	r.decode(t, &p)
	return p
}

// do sends a request with the env's token; headers are "Name: value" strings.
func (e *srvEnv) do(method, path string, body any, headers ...string) srvResponse {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return srvResponse{resp.StatusCode, resp.Header, data}
}

// input is a create input with the env's reference as a data: URI.
func (e *srvEnv) input(extra ...any) map[string]any {
	in := map[string]any{"prompt": "she is playing the piano", "input_image": provider.DataURI(e.ref)}
	for i := 0; i+1 < len(extra); i += 2 {
		in[extra[i].(string)] = extra[i+1]
	}
	return in
}

func (e *srvEnv) create(model string, input map[string]any, headers ...string) srvResponse {
	e.t.Helper()
	return e.do("POST", "/v1/models/"+model+"/predictions", map[string]any{"input": input}, headers...)
}

func (e *srvEnv) get(id string) apiPrediction {
	e.t.Helper()
	r := e.do("GET", "/v1/predictions/"+id, nil)
	if r.code != http.StatusOK {
		e.t.Fatalf("GET prediction %s: %d %s", id, r.code, r.body)
	}
	return r.prediction(e.t)
}

// fetchImage downloads an output with provider.Fetch and decodes it.
func (e *srvEnv) fetchImage(uri string) image.Image {
	e.t.Helper()
	got, err := provider.Fetch(context.Background(), e.http.Client(), "replicate", uri)
	if err != nil {
		e.t.Fatalf("Fetch(%.60s): %v", uri, err)
	}
	img, _, err := image.Decode(bytes.NewReader(got.Data))
	if err != nil {
		e.t.Fatalf("decode output: %v", err)
	}
	return img
}

func isBlack(img image.Image) bool {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if r, g, bl, _ := img.At(x, y).RGBA(); r|g|bl != 0 {
				return false
			}
		}
	}
	return true
}

func oneModel(name string, b ModelBehavior) map[string]ModelBehavior {
	return map[string]ModelBehavior{name: b}
}

func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	clock := newSrvClock()
	e := newSrvEnv(t, ServerConfig{
		Models:     oneModel("acme/edit", ModelBehavior{Profile: "kontext", Latency: 10 * time.Second}),
		OutputSize: 128, Now: clock.Now,
	})
	r := e.create("acme/edit", e.input("seed", 7, "aspect_ratio", "3:4"))
	if r.code != http.StatusCreated {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	p := r.prediction(t)
	wantGet := e.http.URL + "/v1/predictions/" + p.ID
	if p.Status != "starting" || p.Version != "hidden" || p.Model != "acme/edit" || p.Output != nil || p.Error != nil || p.StartedAt != nil {
		t.Errorf("created prediction = %+v; want starting, hidden version, no output", p)
	}
	if p.URLs["get"] != wantGet || p.URLs["cancel"] != wantGet+"/cancel" || r.header.Get("Location") != wantGet {
		t.Errorf("urls = %v, Location %q; want get %s", p.URLs, r.header.Get("Location"), wantGet)
	}
	if len(p.ID) != 26 {
		t.Errorf("id %q is not Replicate-shaped (26 chars)", p.ID)
	}
	if img, _ := p.Input["input_image"].(string); !strings.Contains(img, "bytes elided") || p.Input["prompt"] != "she is playing the piano" {
		t.Errorf("input echo = %v", p.Input)
	}
	if got := e.srv.Stats().InFlight; got != 1 {
		t.Errorf("InFlight after create = %d, want 1", got)
	}

	clock.Add(time.Second)
	if p = e.get(p.ID); p.Status != "starting" {
		t.Errorf("at 1s: status %q, want starting", p.Status)
	}
	clock.Add(2 * time.Second)
	if p = e.get(p.ID); p.Status != "processing" || p.StartedAt == nil || !strings.Contains(p.Logs, "Using seed: 7") {
		t.Errorf("at 3s: status %q, started_at %v, logs %q; want processing with seed log", p.Status, p.StartedAt, p.Logs)
	}
	clock.Add(7 * time.Second)
	p = e.get(p.ID)
	if p.Status != "succeeded" || p.CompletedAt == nil {
		t.Fatalf("at 10s: %+v; want succeeded", p)
	}
	if diff := cmp.Diff(map[string]float64{"predict_time": 8, "total_time": 10}, p.Metrics); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	out, _ := p.Output.(string)
	if !strings.HasPrefix(out, e.http.URL+"/files/outputs/"+p.ID) {
		t.Fatalf("output = %v; want a URL under /files/outputs", p.Output)
	}
	img := e.fetchImage(out)
	if got, want := img.Bounds().Size(), image.Pt(96, 128); got != want || isBlack(img) {
		t.Errorf("output is %v (black %v); want a %v picture", got, isBlack(img), want)
	}
	st := e.srv.Stats()
	got := [...]int64{st.Created, st.Polls, st.Succeeded, int64(st.InFlight), int64(st.MaxInFlight), st.OutputFetches}
	if want := [...]int64{1, 3, 1, 0, 1, 1}; got != want {
		t.Errorf("stats accepted, polls, succeeded, in flight, max in flight, fetches = %v, want %v", got, want)
	}

	// After the retention window the data is removed, as on Replicate.
	clock.Add(time.Hour)
	if p = e.get(p.ID); !p.DataRemoved || p.Output != nil || p.Status != "succeeded" {
		t.Errorf("after an hour: %+v; want data_removed and no output", p)
	}
	if _, err := provider.Fetch(context.Background(), e.http.Client(), "replicate", out); provider.ClassOf(err) != provider.Transient {
		t.Errorf("fetch of a removed output: %v; want a transient (expired) error", err)
	}
}

func TestServerPreferWait(t *testing.T) {
	t.Parallel()
	models := map[string]ModelBehavior{
		"acme/fast":  {Profile: "ideogram", Latency: 30 * time.Millisecond},
		"acme/array": {Profile: "gpt-image", Latency: 10 * time.Millisecond, ArrayOutput: true},
		"acme/slow":  {Profile: "kontext", Latency: time.Minute},
	}
	e := newSrvEnv(t, ServerConfig{Models: models, OutputSize: 128})

	t.Run("done within the hold: 201 with a data URI", func(t *testing.T) {
		t.Parallel()
		r := e.create("acme/fast", e.input("aspect_ratio", "16:9"), "Prefer: wait=5")
		p := r.prediction(t)
		out, _ := p.Output.(string)
		if r.code != http.StatusCreated || p.Status != "succeeded" || !strings.HasPrefix(out, "data:image/png;base64,") {
			t.Fatalf("create: %d status %q output %.40v; want 201 succeeded with a data URI", r.code, p.Status, p.Output)
		}
		if img := e.fetchImage(out); img.Bounds().Size() != image.Pt(128, 72) {
			t.Errorf("output size %v, want 128x72", img.Bounds().Size())
		}
		if !strings.Contains(p.Logs, "Using seed: ") {
			t.Errorf("logs %q lack the seed", p.Logs)
		}
		// A later poll gives the URL form.
		if url, _ := e.get(p.ID).Output.(string); !strings.HasPrefix(url, e.http.URL+"/files/outputs/") {
			t.Errorf("poll output = %q, want a URL", url)
		}
	})
	t.Run("array output", func(t *testing.T) {
		t.Parallel()
		r := e.create("acme/array", e.input(), "Prefer: wait")
		p := r.prediction(t)
		list, _ := p.Output.([]any)
		if r.code != http.StatusCreated || len(list) != 1 {
			t.Fatalf("create: %d output %.60v; want 201 with a one-element array", r.code, p.Output)
		}
		e.fetchImage(list[0].(string))
	})
	t.Run("hold expires: 202 and Location", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		r := e.create("acme/slow", e.input(), "Prefer: wait=1")
		p := r.prediction(t)
		if r.code != http.StatusAccepted || (p.Status != "starting" && p.Status != "processing") || p.Output != nil {
			t.Errorf("create: %d status %q; want 202 starting or processing", r.code, p.Status)
		}
		if r.header.Get("Location") != p.URLs["get"] || p.URLs["get"] == "" {
			t.Errorf("Location %q, urls.get %q", r.header.Get("Location"), p.URLs["get"])
		}
		if held := time.Since(start); held < time.Second {
			t.Errorf("held %s, want about 1s", held)
		}
	})
	t.Run("SyncOutputURL", func(t *testing.T) {
		t.Parallel()
		e := newSrvEnv(t, ServerConfig{Models: models, OutputSize: 64, SyncOutputURL: true})
		p := e.create("acme/fast", e.input(), "Prefer: wait=5").prediction(t)
		out, _ := p.Output.(string)
		if !strings.HasPrefix(out, e.http.URL+"/files/outputs/") {
			t.Fatalf("output = %.60v, want a URL", p.Output)
		}
		e.fetchImage(out)
	})
}

func TestServerRateLimit(t *testing.T) {
	t.Parallel()
	const limit = 10
	clock := newSrvClock()
	e := newSrvEnv(t, ServerConfig{
		Models:    oneModel("acme/edit", ModelBehavior{Profile: "seededit"}),
		RateLimit: limit, RateWindow: time.Minute, OutputSize: 64, Now: clock.Now,
	})
	in := e.input()
	codes := make(chan srvResponse, limit+5)
	var wg sync.WaitGroup
	for range limit + 5 {
		wg.Go(func() { codes <- e.create("acme/edit", in) })
	}
	wg.Wait()
	close(codes)
	accepted := 0
	for r := range codes {
		switch r.code {
		case http.StatusCreated:
			accepted++
		case http.StatusTooManyRequests:
			var body map[string]any
			r.decode(t, &body)
			want := map[string]any{"detail": "Request was throttled. Your rate limit resets in ~60s.", "status": 429.0, "retry_after": 60.0}
			if diff := cmp.Diff(want, body); diff != "" {
				t.Errorf("429 body (-want +got):\n%s", diff)
			}
			if r.header.Get("Retry-After") != "60" || r.header.Get("X-Sim-Throttle") != "rate" {
				t.Errorf("429 headers %v", r.header)
			}
		default:
			t.Errorf("create: %d %s", r.code, r.body)
		}
	}
	if accepted != limit {
		t.Errorf("accepted %d of %d creates, want exactly %d", accepted, limit+5, limit)
	}

	clock.Add(20 * time.Second)
	r := e.create("acme/edit", in)
	var body struct {
		RetryAfter int `json:"retry_after"`
	}
	r.decode(t, &body)
	if r.code != http.StatusTooManyRequests || body.RetryAfter != 40 {
		t.Errorf("20s later: %d retry_after %d; want 429 after 40", r.code, body.RetryAfter)
	}
	clock.Add(40 * time.Second) // the first ten leave the window
	if r := e.create("acme/edit", in); r.code != http.StatusCreated {
		t.Errorf("a window later: %d %s; want 201", r.code, r.body)
	}

	st := e.srv.Stats()
	if st.Throttled != 6 || st.Created != limit+1 || st.Creates != limit+7 {
		t.Errorf("stats throttled %d accepted %d creates %d; want 6, %d, %d", st.Throttled, st.Created, st.Creates, limit+1, limit+7)
	}
	if got := st.MaxInWindow(time.Minute); got != limit {
		t.Errorf("MaxInWindow(1m) = %d, want %d", got, limit)
	}
	if got := st.OverLimitWindows(time.Minute, limit); got != 0 {
		t.Errorf("OverLimitWindows(1m, %d) = %d, want 0: the server's own limiter held", limit, got)
	}
	if got := st.OverLimitWindows(2*time.Minute, limit); got != 1 {
		t.Errorf("OverLimitWindows(2m, %d) = %d, want 1", limit, got)
	}

	t.Run("invalid creates count against the limit", func(t *testing.T) {
		t.Parallel()
		e := newSrvEnv(t, ServerConfig{Models: oneModel("acme/edit", ModelBehavior{Profile: "kontext"}), RateLimit: 2, OutputSize: 64})
		for i, want := range []int{http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusTooManyRequests} {
			model, in := "acme/edit", e.input()
			if i == 0 {
				model = "acme/nope"
			}
			if i == 1 {
				delete(in, "prompt")
			}
			if r := e.create(model, in); r.code != want {
				t.Errorf("create %d: %d %s, want %d", i, r.code, r.body, want)
			}
		}
	})
}

func TestServerConcurrencyCap(t *testing.T) {
	t.Parallel()
	clock := newSrvClock()
	e := newSrvEnv(t, ServerConfig{
		Models:      oneModel("acme/edit", ModelBehavior{Profile: "kontext", Latency: 10 * time.Second}),
		Concurrency: 3, OutputSize: 64, Now: clock.Now,
	})
	in := e.input()
	create := func(want int) apiPrediction {
		t.Helper()
		r := e.create("acme/edit", in)
		if r.code != want {
			t.Fatalf("create: %d %s; want %d", r.code, r.body, want)
		}
		if want == http.StatusTooManyRequests && r.header.Get("X-Sim-Throttle") != "concurrency" {
			t.Errorf("X-Sim-Throttle = %q, want concurrency", r.header.Get("X-Sim-Throttle"))
		}
		if want != http.StatusCreated {
			return apiPrediction{}
		}
		return r.prediction(t)
	}
	first := create(http.StatusCreated)
	create(http.StatusCreated)
	create(http.StatusCreated)
	create(http.StatusTooManyRequests)

	clock.Add(4 * time.Second)
	r := e.create("acme/edit", in)
	var body struct {
		RetryAfter int `json:"retry_after"`
	}
	r.decode(t, &body)
	if r.code != http.StatusTooManyRequests || body.RetryAfter != 6 {
		t.Errorf("at 4s: %d retry_after %d; want 429 after 6 (when the first finishes)", r.code, body.RetryAfter)
	}
	// Cancelling frees a slot at once.
	c := e.do("POST", "/v1/predictions/"+first.ID+"/cancel", nil)
	if p := c.prediction(t); c.code != http.StatusOK || p.Status != "canceled" {
		t.Fatalf("cancel: %d %s", c.code, c.body)
	}
	create(http.StatusCreated) // ends at 14s
	create(http.StatusTooManyRequests)

	clock.Add(6 * time.Second) // the two from 0s finish unpolled
	if st := e.srv.Stats(); st.InFlight != 1 {
		t.Errorf("at 10s: InFlight = %d, want 1", st.InFlight)
	}
	create(http.StatusCreated)
	create(http.StatusCreated)
	create(http.StatusTooManyRequests)

	st := e.srv.Stats()
	got := [...]int64{st.Created, st.Throttled, st.ThrottledConcurrency, st.Canceled, st.Succeeded, int64(st.MaxInFlight), int64(st.InFlight)}
	if want := [...]int64{6, 4, 4, 1, 2, 3, 3}; got != want {
		t.Errorf("accepted, throttled, concurrency 429s, canceled, succeeded, max in flight, in flight = %v, want %v", got, want)
	}
	if p := e.get(first.ID); p.Status != "canceled" || p.Output != nil {
		t.Errorf("canceled prediction later reads %q", p.Status)
	}
}

func TestServerCancelAfter(t *testing.T) {
	t.Parallel()
	clock := newSrvClock()
	e := newSrvEnv(t, ServerConfig{
		Models: map[string]ModelBehavior{
			"acme/ten":   {Profile: "kontext", Latency: 10 * time.Second},
			"acme/sixty": {Profile: "kontext", Latency: 60 * time.Second},
		},
		OutputSize: 64, Now: clock.Now,
	})
	running := e.create("acme/ten", e.input(), "Cancel-After: 5s").prediction(t)
	queued := e.create("acme/sixty", e.input(), "Cancel-After: 5").prediction(t)
	if running.Deadline == "" {
		t.Error("no deadline in the prediction")
	}
	clock.Add(5 * time.Second)
	if p := e.get(running.ID); p.Status != "canceled" || p.StartedAt == nil || p.Metrics["predict_time"] != 3 {
		t.Errorf("running past its deadline: %+v; want canceled after 3s of predict time", p)
	}
	if p := e.get(queued.ID); p.Status != "aborted" || p.StartedAt != nil {
		t.Errorf("not started by its deadline: %+v; want aborted", p)
	}
	if st := e.srv.Stats(); st.Canceled != 2 || st.InFlight != 0 {
		t.Errorf("Canceled %d InFlight %d; want 2, 0", st.Canceled, st.InFlight)
	}
}

func TestServerFailureMix(t *testing.T) {
	t.Parallel()
	const n = 2000
	b := ModelBehavior{Profile: "flaky", ServerErrorRate: 0.10, ModerationRate: 0.05, BlankRate: 0.10, SlowRate: 0.20}
	run := func(seed int64) (Stats, []string) {
		e := newSrvEnv(t, ServerConfig{Models: oneModel("acme/flaky", b), Seed: seed, OutputSize: 64})
		in := e.input()
		var ids []string
		for range n {
			r := e.create("acme/flaky", in)
			switch r.code {
			case http.StatusCreated:
				ids = append(ids, r.prediction(t).ID)
			case http.StatusServiceUnavailable:
			default:
				t.Fatalf("create: %d %s", r.code, r.body)
			}
		}
		// Find one moderated and one blank prediction and check what a
		// client sees.
		var sawFailed, sawBlank bool
		for _, id := range ids {
			if sawFailed && sawBlank {
				break
			}
			p := e.get(id)
			switch {
			case p.Status == "failed" && !sawFailed:
				sawFailed = true
				if p.Error == nil || !strings.Contains(*p.Error, "NSFW") || p.Output != nil {
					t.Errorf("moderated prediction: error %v output %v", p.Error, p.Output)
				}
			case p.Status == "succeeded" && !sawBlank:
				sawBlank = isBlack(e.fetchImage(p.Output.(string)))
			}
		}
		if !sawFailed || !sawBlank {
			t.Errorf("saw a moderated prediction %v, a blank output %v; want both", sawFailed, sawBlank)
		}
		return e.srv.Stats(), ids
	}
	st, ids := run(42)
	accepted := float64(st.Created)
	check := func(name string, got int64, p, of float64) {
		t.Helper()
		want, sd := p*of, math.Sqrt(of*p*(1-p))
		if math.Abs(float64(got)-want) > 5*sd {
			t.Errorf("%s = %d, want %.0f ± %.0f", name, got, want, 5*sd)
		}
		t.Logf("%s = %d (expected %.0f)", name, got, want)
	}
	check("server errors", st.ServerErrors, 0.10, n)
	check("moderated", st.Moderated, 0.05, accepted)
	check("blank", st.Blank, 0.95*0.10, accepted) // moderation wins over blank
	check("slow", st.Slow, 0.20, accepted)
	if st.Created+st.ServerErrors != n || st.Succeeded+st.Moderated != st.Created || st.InFlight != 0 {
		t.Errorf("inconsistent stats: %+v", st)
	}

	again, ids2 := run(42)
	ignore := cmpopts.IgnoreFields(Stats{}, "Since", "Windows", "Polls", "OutputFetches")
	if diff := cmp.Diff(st, again, ignore, cmpopts.IgnoreUnexported(Stats{})); diff != "" {
		t.Errorf("same Seed, different outcomes (-first +second):\n%s", diff)
	}
	if !cmp.Equal(ids, ids2) {
		t.Error("same Seed, different prediction ids")
	}
}

func TestStatsWindows(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	tests := []struct {
		name    string
		accepts []time.Duration
		w       time.Duration
		limit   int
		max     int
		over    int
	}{
		{"empty", nil, time.Second, 0, 0, 0},
		{"zero window", ms(0, 1, 2), 0, 0, 0, 0},
		{"sliding beats fixed", ms(0, 100, 200, 1000, 1050), time.Second, 3, 4, 1},
		{"every start over", ms(0, 100, 200, 1000, 1050), time.Second, 2, 4, 3},
		{"half-open window", ms(0, 1000, 2000), time.Second, 1, 1, 0},
		{"just inside", ms(0, 999, 1998), time.Second, 1, 2, 2},
		{"duplicate starts count once", ms(0, 0, 0, 500), time.Second, 3, 4, 1},
		{"burst at a fixed-window edge", ms(900, 950, 1000, 1050, 5000), time.Second, 3, 4, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := Stats{accepts: tt.accepts}
			if got := st.MaxInWindow(tt.w); got != tt.max {
				t.Errorf("MaxInWindow(%s) = %d, want %d", tt.w, got, tt.max)
			}
			if got := st.OverLimitWindows(tt.w, tt.limit); got != tt.over {
				t.Errorf("OverLimitWindows(%s, %d) = %d, want %d", tt.w, tt.limit, got, tt.over)
			}
		})
	}
}

func TestServerAuth(t *testing.T) {
	t.Parallel()
	e := newSrvEnv(t, ServerConfig{Models: oneModel("acme/edit", ModelBehavior{Profile: "kontext"}), Token: "r8_secret", OutputSize: 64})
	body, _ := json.Marshal(map[string]any{"input": e.input()})
	for _, auth := range []string{"", "Bearer r8_wrong", "r8_secret", "Token r8_secret"} {
		req, _ := http.NewRequest("POST", e.http.URL+"/v1/models/acme/edit/predictions", bytes.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := e.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p problem
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || err != nil || p.Status != 401 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("Authorization %q: %d %+v; want a 401 problem", auth, resp.StatusCode, p)
		}
	}
	if r := e.create("acme/edit", e.input()); r.code != http.StatusCreated {
		t.Errorf("right token: %d %s", r.code, r.body)
	}
	if st := e.srv.Stats(); st.Unauthorized != 4 || st.Creates != 1 {
		t.Errorf("Unauthorized %d Creates %d; want 4, 1", st.Unauthorized, st.Creates)
	}

	open, err := NewServer(ServerConfig{Models: oneModel("acme/edit", ModelBehavior{Profile: "kontext"})})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	open.Handler().ServeHTTP(rec, httptest.NewRequest("POST", "/v1/models/acme/edit/predictions", bytes.NewReader(body)))
	if rec.Code != http.StatusCreated {
		t.Errorf("no token configured, none sent: %d %s", rec.Code, rec.Body)
	}
}

func TestServerInvalidRequests(t *testing.T) {
	t.Parallel()
	e := newSrvEnv(t, ServerConfig{Models: oneModel("acme/edit", ModelBehavior{Profile: "kontext"}), OutputSize: 64})
	bad := e.input()
	tests := []struct {
		name    string
		path    string
		body    any
		headers []string
		code    int
		detail  string
	}{
		{"unknown model", "/v1/models/acme/nope/predictions", map[string]any{"input": bad}, nil, 404, "could not be found"},
		{"unknown route", "/v1/deployments/acme/x/predictions", map[string]any{"input": bad}, nil, 404, "could not be found"},
		{"no input", "/v1/models/acme/edit/predictions", map[string]any{}, nil, 422, "input is required"},
		{"no prompt", "/v1/models/acme/edit/predictions", map[string]any{"input": map[string]any{"input_image": bad["input_image"]}}, nil, 422, "prompt is required"},
		{"not JSON", "/v1/models/acme/edit/predictions", []byte("{"), nil, 400, "not valid JSON"},
		{"remote URL", "/v1/models/acme/edit/predictions", map[string]any{"input": e.input("input_image", "https://example.com/ref.png")}, nil, 422, "does not reach the internet"},
		{"bad data URI", "/v1/models/acme/edit/predictions", map[string]any{"input": e.input("input_image", "data:image/png;base64,!!!")}, nil, 422, "data URI"},
		{"not an image", "/v1/models/acme/edit/predictions", map[string]any{"input": e.input("input_image", provider.DataURI([]byte("hello")))}, nil, 422, "cannot decode"},
		{"not a URI", "/v1/models/acme/edit/predictions", map[string]any{"input": e.input("input_image", "ref.png")}, nil, 422, "data: URI or an http(s) URL"},
		{"bad aspect", "/v1/models/acme/edit/predictions", map[string]any{"input": e.input("aspect_ratio", "wide")}, nil, 422, "aspect_ratio"},
		{"bad seed", "/v1/models/acme/edit/predictions", map[string]any{"input": e.input("seed", 1.5)}, nil, 422, "seed"},
		{"bad Prefer", "/v1/models/acme/edit/predictions", map[string]any{"input": bad}, []string{"Prefer: wait=61"}, 400, "Prefer"},
		{"short Cancel-After", "/v1/models/acme/edit/predictions", map[string]any{"input": bad}, []string{"Cancel-After: 1s"}, 400, "minimum"},
		{"version create of unknown model", "/v1/predictions", map[string]any{"version": "acme/nope:abc", "input": bad}, nil, 404, "could not be found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := e.do("POST", tt.path, tt.body, tt.headers...)
			var p problem
			r.decode(t, &p)
			if r.code != tt.code || p.Status != tt.code || !strings.Contains(p.Detail, tt.detail) || r.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%d %s; want a %d problem mentioning %q", r.code, r.body, tt.code, tt.detail)
			}
		})
	}
	t.Run("unknown prediction", func(t *testing.T) {
		t.Parallel()
		for _, method := range []string{"GET", "POST"} {
			path := "/v1/predictions/nope"
			if method == "POST" {
				path += "/cancel"
			}
			if r := e.do(method, path, nil); r.code != http.StatusNotFound {
				t.Errorf("%s %s: %d", method, path, r.code)
			}
		}
	})
}

func TestServerReferences(t *testing.T) {
	t.Parallel()
	e := newSrvEnv(t, ServerConfig{
		Models: map[string]ModelBehavior{
			"acme/edit": {Profile: "kontext"},
			"acme/gen4": {Profile: "kontext", AspectRatio: "16:9"},
		},
		OutputSize: 64,
	})

	// Upload the reference as the adapter does for large files.
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("content", "mara.png")
	fw.Write(e.ref)
	mw.WriteField("type", "image/png")
	mw.WriteField("metadata", `{"character":"mara"}`)
	mw.Close()
	up := e.do("POST", "/v1/files", buf.Bytes(), "Content-Type: "+mw.FormDataContentType())
	var file struct {
		ID          string            `json:"id"`
		Size        int               `json:"size"`
		ContentType string            `json:"content_type"`
		URLs        map[string]string `json:"urls"`
		Metadata    map[string]string `json:"metadata"`
	}
	up.decode(t, &file)
	if up.code != http.StatusCreated || file.Size != len(e.ref) || file.ContentType != "image/png" || file.Metadata["character"] != "mara" {
		t.Fatalf("upload: %d %s", up.code, up.body)
	}
	got, err := provider.Fetch(context.Background(), e.http.Client(), "replicate", file.URLs["get"])
	if err != nil || !bytes.Equal(got.Data, e.ref) {
		t.Fatalf("urls.get serves %d bytes (%v), want the upload", len(got.Data), err)
	}
	if r := e.do("GET", "/v1/files/"+file.ID, nil); r.code != http.StatusOK {
		t.Errorf("file metadata: %d", r.code)
	}

	for _, tc := range []struct {
		name  string
		model string
		input map[string]any
		size  image.Point
	}{
		{"upload URL as input_image", "acme/edit", e.input("input_image", file.URLs["get"]), image.Pt(64, 64)},
		{"character_reference_image", "acme/edit", map[string]any{"prompt": "p", "character_reference_image": file.URLs["get"]}, image.Pt(64, 64)},
		{"input_images[0], match_input_image", "acme/edit", map[string]any{"prompt": "p", "input_images": []any{file.URLs["get"]}, "aspect_ratio": "match_input_image"}, image.Pt(48, 64)},
		{"reference_images[0], model default 16:9", "acme/gen4", map[string]any{"prompt": "p", "reference_images": []any{provider.DataURI(e.ref)}}, image.Pt(64, 36)},
		{"ratio Render lacks", "acme/edit", e.input("aspect_ratio", "21:9", "size", 210), image.Pt(210, 90)},
		{"no reference", "acme/edit", map[string]any{"prompt": "a castle", "output_format": "jpg"}, image.Pt(64, 64)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.create(tc.model, tc.input, "Prefer: wait=10")
			p := r.prediction(t)
			if r.code != http.StatusCreated || p.Status != "succeeded" {
				t.Fatalf("create: %d %s", r.code, r.body)
			}
			if img := e.fetchImage(p.Output.(string)); img.Bounds().Size() != tc.size {
				t.Errorf("output size %v, want %v", img.Bounds().Size(), tc.size)
			}
		})
	}

	if r := e.do("DELETE", "/v1/files/"+file.ID, nil); r.code != http.StatusNoContent {
		t.Errorf("delete: %d", r.code)
	}
	if r := e.create("acme/edit", e.input("input_image", file.URLs["get"])); r.code != http.StatusUnprocessableEntity {
		t.Errorf("create from a deleted upload: %d, want 422", r.code)
	}
}

func TestServerTags(t *testing.T) {
	t.Parallel()
	e := newSrvEnv(t, ServerConfig{Models: oneModel("intelligent-utilities/topic-tags", ModelBehavior{Profile: TagsProfile})})
	r := e.create("intelligent-utilities/topic-tags", map[string]any{
		"text":           "Consistent characters: generate a character once, then keep the character consistent across scenes. Scenes vary.",
		"number_of_tags": 3,
	}, "Prefer: wait")
	p := r.prediction(t)
	if diff := cmp.Diff([]any{"consistent", "character", "scenes"}, p.Output); r.code != http.StatusCreated || diff != "" {
		t.Errorf("tags: %d (-want +got):\n%s", r.code, diff)
	}
}

func TestServerStatsEndpoint(t *testing.T) {
	t.Parallel()
	e := newSrvEnv(t, ServerConfig{
		Models:    oneModel("acme/edit", ModelBehavior{Profile: "kontext", Latency: time.Minute}),
		RateLimit: 3, Concurrency: 100, OutputSize: 64,
	})
	for range 4 {
		e.create("acme/edit", e.input())
	}
	r := e.do("GET", "/stats?window=10s&limit=2", nil)
	var got struct {
		Creates     int64          `json:"creates"`
		Created     int64          `json:"created"`
		Throttled   int64          `json:"throttled"`
		InFlight    int            `json:"in_flight"`
		MaxInFlight int            `json:"max_in_flight"`
		Windows     map[string]int `json:"windows"`
		RateLimit   int            `json:"rate_limit"`
		RateWindowS float64        `json:"rate_window_s"`
		Concurrency int            `json:"concurrency"`
		MaxInWindow map[string]int `json:"max_in_window"`
		OverLimit   map[string]any `json:"over_limit"`
	}
	r.decode(t, &got)
	total := 0
	for _, n := range got.Windows {
		total += n
	}
	if r.code != http.StatusOK || got.Creates != 4 || got.Created != 3 || got.Throttled != 1 || got.InFlight != 3 || got.MaxInFlight != 3 || total != 3 {
		t.Errorf("stats: %d %s", r.code, r.body)
	}
	if got.RateLimit != 3 || got.RateWindowS != 60 || got.Concurrency != 100 || got.MaxInWindow["1m0s"] != 3 || got.MaxInWindow["10s"] != 3 {
		t.Errorf("derived stats: %s", r.body)
	}
	if got.OverLimit["windows"] != 1.0 || got.OverLimit["limit"] != 2.0 || got.OverLimit["window"] != "10s" {
		t.Errorf("over_limit = %v; want 1 window over 2 per 10s", got.OverLimit)
	}

	r = e.do("POST", "/stats/reset", nil)
	var after struct {
		Creates     int64 `json:"creates"`
		InFlight    int   `json:"in_flight"`
		MaxInFlight int   `json:"max_in_flight"`
	}
	r.decode(t, &after)
	if after.Creates != 0 || after.InFlight != 3 || after.MaxInFlight != 3 {
		t.Errorf("after reset: %s", r.body)
	}
	if r := e.create("acme/edit", e.input()); r.code != http.StatusCreated {
		t.Errorf("reset did not clear the rate window: %d", r.code)
	}
}

func TestServerList(t *testing.T) {
	t.Parallel()
	clock := newSrvClock()
	e := newSrvEnv(t, ServerConfig{Models: oneModel("acme/edit", ModelBehavior{Profile: "kontext", Latency: time.Second}), OutputSize: 64, Now: clock.Now})
	var ids []string
	for range 3 {
		ids = append(ids, e.create("acme/edit", e.input()).prediction(t).ID)
		clock.Add(time.Minute)
	}
	list := func(query string) (ids []string, next *string) {
		t.Helper()
		r := e.do("GET", "/v1/predictions"+query, nil)
		var page struct {
			Next    *string         `json:"next"`
			Results []apiPrediction `json:"results"`
		}
		r.decode(t, &page)
		if r.code != http.StatusOK {
			t.Fatalf("list%s: %d %s", query, r.code, r.body)
		}
		for _, p := range page.Results {
			if p.Status != "succeeded" {
				t.Errorf("listed %s is %s, want succeeded", p.ID, p.Status)
			}
			ids = append(ids, p.ID)
		}
		return ids, page.Next
	}
	got, next := list("")
	if diff := cmp.Diff([]string{ids[2], ids[1], ids[0]}, got); diff != "" || next != nil {
		t.Errorf("list (-want +got):\n%s next %v", diff, next)
	}
	after := newSrvClock().Now().Add(30 * time.Second).Format(time.RFC3339)
	if got, _ := list("?created_after=" + after); !cmp.Equal([]string{ids[2], ids[1]}, got) {
		t.Errorf("created_after %s: %v", after, got)
	}
}

func TestServerMaxPredictions(t *testing.T) {
	t.Parallel()
	e := newSrvEnv(t, ServerConfig{Models: oneModel("acme/edit", ModelBehavior{Profile: "kontext"}), MaxPredictions: 2, OutputSize: 64})
	var ids []string
	for range 3 {
		ids = append(ids, e.create("acme/edit", e.input()).prediction(t).ID)
	}
	if r := e.do("GET", "/v1/predictions/"+ids[0], nil); r.code != http.StatusNotFound {
		t.Errorf("oldest prediction: %d, want 404 once forgotten", r.code)
	}
	e.get(ids[2])
}

func TestDefaultModels(t *testing.T) {
	t.Parallel()
	models := DefaultModels()
	for _, profile := range []string{"kontext", "ideogram", "seededit", "gpt-image", "flaky"} {
		if b, ok := models["likeness/sim-"+profile]; !ok || b.Profile != profile {
			t.Errorf("likeness/sim-%s = %+v, %v", profile, b, ok)
		}
	}
	if b := models["likeness/sim-flaky"]; b.ServerErrorRate == 0 || b.BlankRate == 0 || b.ModerationRate == 0 {
		t.Errorf("sim-flaky does not fail: %+v", b)
	}
	for _, m := range provider.DefaultRegistry().Models() {
		if name, ok := strings.CutPrefix(m.Ref, "replicate:"); ok {
			if _, ok := models[name]; !ok {
				t.Errorf("registry model %s is not served", m.Ref)
			}
		}
	}
	if _, err := NewServer(ServerConfig{}); err != nil {
		t.Errorf("NewServer with default models: %v", err)
	}
	for name, want := range map[string]string{
		"black-forest-labs/flux-kontext-pro": "kontext",
		"black-forest-labs/flux-kontext-dev": "kontext",
		"ideogram-ai/ideogram-character":     "ideogram",
		"bytedance/seededit-3.0":             "seededit",
		"openai/gpt-image-1":                 "gpt-image",
		"runwayml/gen4-image":                "kontext",
	} {
		if got := profileFor(name, provider.OutputURI); got != want {
			t.Errorf("profileFor(%s) = %q, want %q", name, got, want)
		}
	}
	if got := profileFor("intelligent-utilities/topic-tags", provider.OutputText); got != TagsProfile {
		t.Errorf("text model profile = %q", got)
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	t.Parallel()
	ok := ModelBehavior{Profile: "kontext"}
	for name, cfg := range map[string]ServerConfig{
		"model name":      {Models: oneModel("kontext", ok)},
		"profile":         {Models: oneModel("acme/x", ModelBehavior{Profile: "dalle"})},
		"rate":            {Models: oneModel("acme/x", ModelBehavior{Profile: "kontext", BlankRate: 1.5})},
		"jitter":          {Models: oneModel("acme/x", ModelBehavior{Profile: "kontext", LatencyJitter: -1})},
		"aspect":          {Models: oneModel("acme/x", ModelBehavior{Profile: "kontext", AspectRatio: "square"})},
		"rate limit":      {RateLimit: -1},
		"concurrency":     {Concurrency: -1},
		"latency scale":   {LatencyScale: math.NaN()},
		"output size":     {OutputSize: 10},
		"max predictions": {MaxPredictions: -5},
	} {
		if _, err := NewServer(cfg); err == nil {
			t.Errorf("%s: NewServer accepted %+v", name, cfg)
		}
	}
}

// BenchmarkCreatePoll measures one create plus one poll over loopback HTTP,
// the load a worker fleet puts on the server (outputs are not fetched, so no
// rendering is involved).
func BenchmarkCreatePoll(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		name := "serial"
		if parallel {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			e := newSrvEnv(b, ServerConfig{
				Models:     oneModel("acme/edit", ModelBehavior{Profile: "kontext", Latency: 5 * time.Second, LatencyJitter: 0.3}),
				OutputSize: 256, Concurrency: 1 << 20, RateLimit: 1 << 20,
			})
			ref := srvReference(b, 256, 256)
			body := srvMultipart(b, ref)
			up := e.do("POST", "/v1/files", body.data, "Content-Type: "+body.contentType)
			var file struct {
				URLs map[string]string `json:"urls"`
			}
			up.decode(b, &file)
			create, _ := json.Marshal(map[string]any{"input": map[string]any{"prompt": "p", "input_image": file.URLs["get"]}})
			client := e.http.Client()
			client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
			op := func() error {
				req, _ := http.NewRequest("POST", e.http.URL+"/v1/models/acme/edit/predictions", bytes.NewReader(create))
				req.Header.Set("Authorization", "Bearer "+e.token)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				var p struct {
					URLs map[string]string `json:"urls"`
				}
				err = json.NewDecoder(resp.Body).Decode(&p)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusCreated {
					return fmt.Errorf("create: %d %v", resp.StatusCode, err)
				}
				req, _ = http.NewRequest("GET", p.URLs["get"], nil)
				req.Header.Set("Authorization", "Bearer "+e.token)
				resp, err = client.Do(req)
				if err != nil {
					return err
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("poll: %d", resp.StatusCode)
				}
				return nil
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if parallel {
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := op(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if err := op(); err != nil {
						b.Fatal(err)
					}
				}
			}
			elapsed := time.Since(start)
			st := e.srv.Stats()
			b.ReportMetric(float64(st.Created)/elapsed.Seconds(), "creates/s")
			b.ReportMetric(float64(st.MaxInFlight), "max_in_flight")
		})
	}
}

type srvBody struct {
	data        []byte
	contentType string
}

func srvMultipart(t testing.TB, content []byte) srvBody {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("content", "ref.png")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(content)
	mw.Close()
	return srvBody{buf.Bytes(), mw.FormDataContentType()}
}
