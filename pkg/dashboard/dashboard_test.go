package dashboard_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/dashboard"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

// bundle is a test's dashboard over the real Redis and a bucket of the
// real MinIO.
type bundle struct {
	runs *runstate.Store
	rdb  *redis.Client
	blob *store.S3
	srv  *httptest.Server
}

func setup(t *testing.T, mutate func(*dashboard.Config)) *bundle {
	t.Helper()
	addr, db := testenv.RedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { rdb.Close() })
	env := testenv.S3(t)
	blob, err := store.NewS3(store.S3Config{Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey,
		Bucket: "dash-" + strings.ToLower(rand.Text()[:16])})
	if err != nil {
		t.Fatal(err)
	}
	if err := blob.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	b := &bundle{runs: runstate.New(rdb, runstate.Config{}), rdb: rdb, blob: blob}
	cfg := dashboard.Config{Runs: b.runs, Store: blob, Logger: slog.New(slog.DiscardHandler)}
	if mutate != nil {
		mutate(&cfg)
	}
	h, err := dashboard.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.srv = httptest.NewServer(h)
	t.Cleanup(b.srv.Close)
	return b
}

type response struct {
	code   int
	header http.Header
	body   string
}

func (b *bundle) do(t *testing.T, method, path string, body url.Values, hdr map[string]string) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	req, err := http.NewRequest(method, b.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if method == http.MethodGet {
		c = http.DefaultClient // follow the mux's path cleaning
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(raw)}
}

func (b *bundle) get(t *testing.T, path string) response {
	t.Helper()
	return b.do(t, http.MethodGet, path, nil, nil)
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, r.body)
	}
	return v
}

// putRecord stores a task's record and counts it in the run state, as a
// worker's settle does.
func (b *bundle) putRecord(t *testing.T, rec manifest.Record) {
	t.Helper()
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := b.blob.Put(ctx, store.RecordKey(rec.Run, rec.Task), raw, "application/json"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.runs.Complete(ctx, rec.Run, rec.Task, rec.Status, rec.Cached, rec.CostUSD); err != nil {
		t.Fatal(err)
	}
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	if _, err := b.runs.Create(ctx, runstate.Run{ID: "sheet-1", Name: "sheet", Total: 2, CreatedAt: time.Now(), Models: []string{"sim:kontext"}}); err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{"a", "b"} {
		b.putRecord(t, manifest.Record{Run: "sheet-1", Task: task, Character: "mara", Prompt: "p", Model: "k", ModelRef: "sim:kontext",
			Status: manifest.Succeeded, CostUSD: 0.04, FinishedAt: time.Now()})
	}
	if _, err := b.runs.MarkFinalized(ctx, "sheet-1"); err != nil {
		t.Fatal(err)
	}
	_ = b.blob.Put(ctx, store.ReportKey("sheet-1"), []byte("<html>report</html>"), "text/html")
	_ = b.blob.Put(ctx, "cache/secret.json", []byte("{}"), "application/json")

	r := b.get(t, "/api/runs/sheet-1")
	run := decode[dashboard.Run](t, r)
	if r.code != 200 || run.Succeeded != 2 || run.Pending != 0 || !run.Finalized || run.CostUSD != 0.08 || run.Report == "" || run.State != "done" {
		t.Errorf("api run: %d %+v", r.code, run)
	}
	if r := b.get(t, "/api/runs/nope"); r.code != 404 {
		t.Errorf("unknown run: %d; want 404", r.code)
	}
	if r := b.get(t, "/runs/nope"); r.code != 404 {
		t.Errorf("unknown run page: %d; want 404", r.code)
	}
	if r := b.get(t, "/api/runs"); r.code != 200 || !strings.Contains(r.body, `"sheet-1"`) {
		t.Errorf("api runs: %d %s", r.code, r.body)
	}
	r = b.get(t, "/")
	if r.code != 200 || !strings.Contains(r.header.Get("Content-Type"), "text/html") || !strings.Contains(r.body, "sheet-1") || !strings.Contains(r.body, run.Report) {
		t.Errorf("index: %d %s\n%s", r.code, r.header.Get("Content-Type"), r.body)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("index CSP %q; want scripts from this server only", csp)
	}
	r = b.get(t, "/runs/sheet-1")
	if r.code != 200 || !strings.Contains(r.body, `data-run="sheet-1"`) || !strings.Contains(r.body, "/static/run.js") {
		t.Errorf("run page: %d\n%s", r.code, r.body)
	}
	for _, asset := range []string{"/static/run.js", "/static/runs.js", "/static/common.js", "/static/dashboard.css"} {
		if r := b.get(t, asset); r.code != 200 || len(r.body) < 100 {
			t.Errorf("%s: %d, %d bytes", asset, r.code, len(r.body))
		}
	}
	r = b.get(t, run.Report)
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || r.body != "<html>report</html>" {
		t.Errorf("report: %d %s %q", r.code, r.header.Get("Content-Type"), r.body)
	}
	for _, bad := range []string{"/files/cache/secret.json", "/files/runs/../cache/secret.json", "/files/runs/sheet-1/missing", "/api/runs/sheet-1/records/..%2F..%2Fcache%2Fsecret"} {
		if r := b.get(t, bad); r.code != 404 {
			t.Errorf("%s: %d; want 404", bad, r.code)
		}
	}
}

func TestDashboardRunDetailAndGallery(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	const run = "mix-1"
	created := time.Now().Add(-30 * time.Second)
	if _, err := b.runs.Create(ctx, runstate.Run{ID: run, Name: "mix", Total: 8, BudgetUSD: 1, CreatedAt: created,
		Models: []string{"sim:kontext", "sim:seededit"}}); err != nil {
		t.Fatal(err)
	}
	refKey := store.RefKey("abc", "png")
	_ = b.blob.Put(ctx, refKey, []byte("\x89PNG\r\n\x1a\nref"), "image/png")
	now := time.Now()
	base := func(task, char, prompt, model string, v int) manifest.Record {
		return manifest.Record{Run: run, Task: task, Character: char, Prompt: prompt, PromptText: prompt + " text", Model: model,
			ModelRef: "sim:" + model, Variant: v, ReferenceKey: refKey, FinishedAt: now, Seed: 7, TraceID: "trace-" + task}
	}
	ok := func(task, char, prompt, model string, v int, latency int64, attempts ...manifest.Attempt) manifest.Record {
		r := base(task, char, prompt, model, v)
		r.Status, r.CostUSD, r.ProviderLatencyMS = manifest.Succeeded, 0.04, latency
		r.OutputKey = store.OutputKey(run, char, model, prompt, v, "png")
		r.AttemptLog = append(attempts, manifest.Attempt{N: len(attempts) + 1, Seed: 7})
		r.Attempts = len(r.AttemptLog)
		_ = b.blob.Put(ctx, r.OutputKey, []byte("\x89PNG\r\n\x1a\n"+task), "image/png")
		return r
	}
	blank := manifest.Attempt{N: 1, Seed: 7, Class: "bad_output", Error: "bad_output: output check not_blank: the image is one flat colour"}
	failed := base("t5", "theo", "rain", "seededit", 0)
	failed.Status, failed.ErrorClass, failed.Error, failed.Attempts = manifest.Failed, "safety", "flagged by the safety filter", 3
	failed.AttemptLog = []manifest.Attempt{{N: 1, Class: "safety"}, {N: 2, Class: "safety"}, {N: 3, Class: "safety"}}
	skipped := base("t6", "theo", "rain", "kontext", 0)
	skipped.Status, skipped.Error = manifest.SkippedBudget, "budget: $0.04 for this output would pass the run's budget"
	for _, rec := range []manifest.Record{
		ok("t1", "mara", "piano", "kontext", 0, 100),
		ok("t2", "mara", "piano", "seededit", 0, 300, blank),
		ok("t3", "mara", "rain", "kontext", 0, 200),
		ok("t4", "theo", "piano", "kontext", 0, 400),
		failed, skipped,
	} {
		b.putRecord(t, rec)
	}

	d := decode[dashboard.Detail](t, b.get(t, "/api/runs/"+run+"/detail"))
	if d.Run.Done != 6 || d.Run.Pending != 2 || d.Run.State != "running" || d.Run.BudgetUSD != 1 {
		t.Errorf("run: %+v", d.Run)
	}
	// Six tasks finished within the last 30s of the run: 12 per minute.
	if d.RatePerMin < 10 || d.RatePerMin > 13 || d.ETAS == nil || *d.ETAS < 8 || *d.ETAS > 13 {
		t.Errorf("rate %.1f/min, ETA %v; want about 12/min and 10s", d.RatePerMin, d.ETAS)
	}
	models := map[string]dashboard.ModelRow{}
	for _, m := range d.Models {
		models[m.Model] = m
	}
	k, s := models["kontext"], models["seededit"]
	if k.Total != 4 || k.Succeeded != 3 || k.Skipped != 1 || k.LatencyP50MS != 200 || k.LatencyP95MS != 400 || k.Retries != 0 {
		t.Errorf("kontext row: %+v", k)
	}
	if s.Total != 2 || s.Succeeded != 1 || s.Failed != 1 || s.Retries != 3 || s.CheckFailures["not_blank"] != 1 || s.SuccessRate != 0.5 {
		t.Errorf("seededit row: %+v", s)
	}
	if len(d.Failures) != 2 || d.Failures[0].Count != 1 {
		t.Fatalf("failures: %+v", d.Failures)
	}
	classes := map[string]dashboard.FailureGroup{}
	for _, g := range d.Failures {
		classes[g.Class] = g
	}
	if g := classes["safety"]; len(g.Messages) != 1 || g.Messages[0].Message != "flagged by the safety filter" || g.Messages[0].Tasks[0] != "t5" {
		t.Errorf("safety group: %+v", g)
	}
	if g := classes["skipped_budget"]; g.Count != 1 {
		t.Errorf("skipped_budget group: %+v", g)
	}
	if len(d.Limits) == 0 || d.Limits[0].Circuit != "closed" {
		t.Errorf("limits: %+v", d.Limits)
	}
	if d.Actions.Enabled || d.Actions.Allowed {
		t.Errorf("actions without a token: %+v", d.Actions)
	}

	g := decode[dashboard.Gallery](t, b.get(t, "/api/runs/"+run+"/gallery"))
	if g.Total != 6 || g.Matched != 6 || len(g.Items) != 6 || g.References["mara"] != "/files/"+refKey {
		t.Fatalf("gallery: %+v", g)
	}
	if first := g.Items[0]; first.Task != "t1" || first.Image != "/files/"+store.OutputKey(run, "mara", "kontext", "piano", 0, "png") {
		t.Errorf("first item %+v; want t1 with its image", first)
	}
	facets := map[string]int{}
	for _, f := range g.Facets["model"] {
		facets[f.Value] = f.Count
	}
	if facets["kontext"] != 4 || facets["seededit"] != 2 {
		t.Errorf("model facet: %+v", g.Facets["model"])
	}
	g = decode[dashboard.Gallery](t, b.get(t, "/api/runs/"+run+"/gallery?character=mara&model=kontext"))
	if g.Matched != 2 || len(g.Items) != 2 || g.Items[0].Task != "t1" || g.Items[1].Task != "t3" {
		t.Errorf("filtered gallery: %+v", g.Items)
	}
	g = decode[dashboard.Gallery](t, b.get(t, "/api/runs/"+run+"/gallery?status=failed"))
	if g.Matched != 1 || g.Items[0].Image != "" || g.Items[0].ErrorClass != "safety" {
		t.Errorf("failed gallery: %+v", g.Items)
	}
	g = decode[dashboard.Gallery](t, b.get(t, "/api/runs/"+run+"/gallery?limit=2&offset=2"))
	if g.Matched != 6 || len(g.Items) != 2 || g.Items[0].Task != "t3" {
		t.Errorf("paged gallery: %+v", g.Items)
	}
	// Each image opens with its record.
	rec := decode[manifest.Record](t, b.get(t, "/api/runs/"+run+"/records/t2"))
	if rec.Seed != 7 || len(rec.AttemptLog) != 2 || rec.AttemptLog[0].Class != "bad_output" || rec.TraceID != "trace-t2" {
		t.Errorf("record t2: %+v", rec)
	}
	if r := b.get(t, g.Items[0].Image); r.code != 200 || r.header.Get("Content-Type") != "image/png" {
		t.Errorf("image: %d %s", r.code, r.header.Get("Content-Type"))
	}
	if r := b.get(t, "/api/runs/"+run+"/records/nope"); r.code != 404 {
		t.Errorf("unknown task: %d", r.code)
	}

	// A task landing afterwards shows up at the next refresh (the cache
	// rereads only what changed).
	time.Sleep(600 * time.Millisecond) // past the records' reuse interval
	b.putRecord(t, ok("t7", "theo", "rain", "seededit", 1, 250))
	g = decode[dashboard.Gallery](t, b.get(t, "/api/runs/"+run+"/gallery?character=theo"))
	if g.Total != 7 || g.Matched != 4 {
		t.Errorf("after a new record: total %d, matched %d; want 7 and 4", g.Total, g.Matched)
	}
}

func TestDashboardActions(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token"
	var retried atomic.Int32
	b := setup(t, func(c *dashboard.Config) {
		c.Token = token
		c.Retry = func(ctx context.Context, run string) (int, error) { retried.Add(1); return 2, nil }
	})
	ctx := context.Background()
	if _, err := b.runs.Create(ctx, runstate.Run{ID: "act-1", Name: "act", Total: 4, BudgetUSD: 0.5, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	bearer := map[string]string{"Authorization": "Bearer " + token}
	post := func(action string, form url.Values, hdr map[string]string) response {
		return b.do(t, http.MethodPost, "/api/runs/act-1/"+action, form, hdr)
	}
	paused := func() bool {
		p, err := b.runs.Paused(ctx, "act-1")
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	if r := post("pause", nil, nil); r.code != 401 || paused() {
		t.Errorf("pause without the token: %d %s; want 401 and not paused", r.code, r.body)
	}
	if r := post("pause", nil, map[string]string{"Authorization": "Bearer wrong"}); r.code != 401 || paused() {
		t.Errorf("pause with a wrong token: %d; want 401", r.code)
	}
	if r := b.get(t, "/api/runs/act-1/pause"); r.code != 405 || paused() {
		t.Errorf("GET of an action: %d; want 405", r.code)
	}
	// A browser's cross-site request is refused even with the token.
	cross := map[string]string{"Authorization": "Bearer " + token, "Sec-Fetch-Site": "cross-site"}
	if r := post("pause", nil, cross); r.code != 403 || paused() {
		t.Errorf("cross-site pause: %d; want 403", r.code)
	}
	if r := post("pause", nil, map[string]string{"Authorization": "Bearer " + token, "Origin": "https://evil.example"}); r.code != 403 || paused() {
		t.Errorf("pause from another origin: %d; want 403", r.code)
	}
	if r := post("pause", nil, bearer); r.code != 200 || !paused() {
		t.Errorf("pause: %d %s", r.code, r.body)
	}
	if d := decode[dashboard.Run](t, b.get(t, "/api/runs/act-1")); d.State != "paused" || !d.Paused {
		t.Errorf("after pause: %+v", d)
	}
	if r := post("resume", nil, bearer); r.code != 200 || paused() {
		t.Errorf("resume: %d %s", r.code, r.body)
	}
	if r := post("budget", url.Values{"budget_usd": {"0.25"}}, bearer); r.code != 409 || !strings.Contains(r.body, "not above") {
		t.Errorf("lowering the budget: %d %s; want 409", r.code, r.body)
	}
	if r := post("budget", url.Values{"budget_usd": {"abc"}}, bearer); r.code != 400 {
		t.Errorf("bad budget: %d; want 400", r.code)
	}
	if r := post("budget", url.Values{"budget_usd": {"2.5"}}, bearer); r.code != 200 {
		t.Errorf("raise budget: %d %s", r.code, r.body)
	}
	if st, _ := b.runs.Get(ctx, "act-1"); st.BudgetUSD != 2.5 {
		t.Errorf("budget = %v; want 2.5", st.BudgetUSD)
	}
	if r := post("retry", nil, bearer); r.code != 200 || retried.Load() != 1 || !strings.Contains(r.body, "2 failed or skipped tasks") {
		t.Errorf("retry: %d %s (called %d)", r.code, r.body, retried.Load())
	}
	if r := post("explode", nil, bearer); r.code != 404 {
		t.Errorf("unknown action: %d", r.code)
	}
	if r := b.do(t, http.MethodPost, "/api/runs/nope/cancel", nil, bearer); r.code != 404 {
		t.Errorf("cancel of an unknown run: %d", r.code)
	}

	// The login form: a wrong token is refused, the right one sets an
	// HttpOnly, SameSite=Strict session cookie that then authorizes.
	if r := b.do(t, http.MethodPost, "/login", url.Values{"token": {"nope"}, "next": {"/runs/act-1"}}, nil); r.code != 401 || strings.Contains(r.header.Get("Set-Cookie"), "likeness_session=") {
		t.Errorf("wrong login: %d %v", r.code, r.header)
	}
	r := b.do(t, http.MethodPost, "/login", url.Values{"token": {token}, "next": {"//evil.example/x"}}, nil)
	if r.code != 303 || r.header.Get("Location") != "/" {
		t.Errorf("login: %d, to %q; want 303 to / (never off-site)", r.code, r.header.Get("Location"))
	}
	raw := r.header.Get("Set-Cookie")
	if !strings.Contains(raw, "HttpOnly") || !strings.Contains(raw, "SameSite=Strict") || strings.Contains(raw, token) {
		t.Errorf("session cookie %q: want HttpOnly, SameSite=Strict and no token in it", raw)
	}
	cookie := strings.SplitN(raw, ";", 2)[0]
	if r := post("cancel", nil, map[string]string{"Cookie": cookie + "x"}); r.code != 401 {
		t.Errorf("cancel with a tampered cookie: %d; want 401", r.code)
	}
	if r := post("cancel", nil, map[string]string{"Cookie": cookie}); r.code != 200 {
		t.Errorf("cancel with the session: %d %s", r.code, r.body)
	}
	if c, _ := b.runs.Canceled(ctx, "act-1"); !c {
		t.Error("run not canceled")
	}
	if d := decode[dashboard.Detail](t, b.do(t, http.MethodGet, "/api/runs/act-1/detail", nil, map[string]string{"Cookie": cookie})); !d.Actions.Allowed || !d.Actions.Enabled {
		t.Errorf("actions with a session: %+v", d.Actions)
	}
	// No page or answer carries the token.
	for _, path := range []string{"/", "/runs/act-1", "/api/runs/act-1/detail", "/login"} {
		if r := b.do(t, http.MethodGet, path, nil, map[string]string{"Cookie": cookie}); strings.Contains(r.body, token) {
			t.Errorf("%s shows the token", path)
		}
	}
}

func TestDashboardSlowsTokenGuessing(t *testing.T) {
	t.Parallel()
	const token = "the-right-token"
	b := setup(t, func(c *dashboard.Config) { c.Token = token })
	ctx := context.Background()
	if _, err := b.runs.Create(ctx, runstate.Run{ID: "g", Name: "g", Total: 1, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if r := b.do(t, http.MethodPost, "/api/runs/g/pause", nil, map[string]string{"Authorization": fmt.Sprintf("Bearer guess-%d", i)}); r.code != 401 {
			t.Fatalf("guess %d: %d; want 401", i, r.code)
		}
	}
	// The allowance is spent: even the right token waits.
	if r := b.do(t, http.MethodPost, "/api/runs/g/pause", nil, map[string]string{"Authorization": "Bearer " + token}); r.code != 429 {
		t.Errorf("after 10 wrong tokens: %d; want 429", r.code)
	}
	if r := b.do(t, http.MethodPost, "/login", url.Values{"token": {token}}, nil); r.code != 429 || strings.Contains(r.header.Get("Set-Cookie"), "likeness_session=") {
		t.Errorf("login after 10 wrong tokens: %d; want 429 and no session", r.code)
	}
	if p, _ := b.runs.Paused(ctx, "g"); p {
		t.Error("a guess paused the run")
	}
}

func TestDashboardWithoutTokenIsReadOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	if _, err := b.runs.Create(ctx, runstate.Run{ID: "ro", Name: "ro", Total: 1, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, hdr := range []map[string]string{nil, {"Authorization": "Bearer "}} {
		if r := b.do(t, http.MethodPost, "/api/runs/ro/cancel", nil, hdr); r.code != 403 || !strings.Contains(r.body, "LIKENESS_DASHBOARD_TOKEN") {
			t.Errorf("cancel without a configured token: %d %s; want 403", r.code, r.body)
		}
	}
	if r := b.do(t, http.MethodPost, "/login", url.Values{"token": {""}}, nil); r.code != 403 {
		t.Errorf("login without a configured token: %d; want 403", r.code)
	}
	if c, _ := b.runs.Canceled(ctx, "ro"); c {
		t.Error("run canceled")
	}
}

func TestNewRequiresRunsAndStore(t *testing.T) {
	t.Parallel()
	if _, err := dashboard.New(dashboard.Config{}); err == nil {
		t.Error("New without Runs and Store succeeded")
	}
}
