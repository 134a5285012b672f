// Package dashboard is what `likeness serve` shows: an HTML page of recent
// runs with their progress, a JSON API over the same run state, and the
// run artifacts (report, images, manifest) served straight from the store,
// so a run's comparison report can be opened from a browser in the
// distributed mode too. It reads Redis and the store; it never writes.
package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

// Blobs is the read side of the object store.
type Blobs interface {
	Get(ctx context.Context, key string) ([]byte, error)
}

// Config configures the dashboard.
type Config struct {
	Runs  *runstate.Store
	Store Blobs
	// Recent is how many runs the index lists. Default 50.
	Recent int
	// Logger receives request errors. Default slog.Default().
	Logger *slog.Logger
}

// Handler serves the dashboard.
type Handler struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the dashboard handler.
func New(cfg Config) *Handler {
	if cfg.Recent <= 0 {
		cfg.Recent = 50
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.index)
	h.mux.HandleFunc("GET /api/runs", h.apiRuns)
	h.mux.HandleFunc("GET /api/runs/{id}", h.apiRun)
	h.mux.HandleFunc("GET /files/{key...}", h.file)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Run is a run as the API shows it.
type Run struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	State     string    `json:"state"`
	Total     int       `json:"total"`
	Succeeded int       `json:"succeeded"`
	Failed    int       `json:"failed"`
	Skipped   int       `json:"skipped"`
	Cached    int       `json:"cached"`
	Pending   int       `json:"pending"`
	CostUSD   float64   `json:"cost_usd"`
	BudgetUSD float64   `json:"budget_usd,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Finalized bool      `json:"finalized"`
	// Report is the report's path on this server, once the run is finalized.
	Report string `json:"report,omitempty"`
}

func view(st *runstate.Status) Run {
	r := Run{
		ID: st.ID, Name: st.Name, State: string(st.State), Total: st.Total,
		Succeeded: st.Succeeded, Failed: st.Failed, Skipped: st.SkippedBudget + st.SkippedCanceled,
		Cached: st.Cached, Pending: st.Total - st.Done(), CostUSD: st.CostUSD, BudgetUSD: st.BudgetUSD,
		CreatedAt: st.CreatedAt.UTC(), Finalized: st.Finalized > 0,
	}
	if r.Finalized {
		r.Report = "/files/" + store.ReportKey(st.ID)
	}
	return r
}

func (h *Handler) recent(ctx context.Context) ([]Run, error) {
	ids, err := h.cfg.Runs.List(ctx, int64(h.cfg.Recent))
	if err != nil {
		return nil, err
	}
	out := make([]Run, 0, len(ids))
	for _, id := range ids {
		st, err := h.cfg.Runs.Get(ctx, id)
		if errors.Is(err, runstate.ErrNotFound) {
			continue // expired between the list and the read
		}
		if err != nil {
			return nil, err
		}
		out = append(out, view(st))
	}
	return out, nil
}

func (h *Handler) apiRuns(w http.ResponseWriter, r *http.Request) {
	runs, err := h.recent(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, map[string]any{"runs": runs})
}

func (h *Handler) apiRun(w http.ResponseWriter, r *http.Request) {
	st, err := h.cfg.Runs.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, runstate.ErrNotFound) {
		http.Error(w, "run not found", http.StatusNotFound)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, view(st))
}

// file serves run artifacts and references from the store. Only keys under
// runs/ and refs/ are served, never the cache index.
func (h *Handler) file(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if store.CheckKey(key) != nil || !(strings.HasPrefix(key, "runs/") || strings.HasPrefix(key, "refs/")) {
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	data, err := h.cfg.Store.Get(r.Context(), key)
	if errors.Is(err, store.ErrNotExist) {
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ctype := mime.TypeByExtension(path.Ext(key))
	if ctype == "" {
		ctype = http.DetectContentType(data)
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(data)
}

var indexTmpl = template.Must(template.New("index").Funcs(template.FuncMap{
	"pct": func(r Run) int {
		if r.Total == 0 {
			return 0
		}
		return 100 * (r.Total - r.Pending) / r.Total
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>likeness runs</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#1f2328;background:#f6f8fa}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de;border-radius:6px}
th,td{padding:.5rem .75rem;border-bottom:1px solid #eaeef2;text-align:left}
th{font-size:12px;text-transform:uppercase;color:#57606a}
.bar{background:#eaeef2;border-radius:3px;height:6px;width:120px}
.bar span{display:block;height:6px;border-radius:3px;background:#1a7f37}
.failed{color:#cf222e}.muted{color:#57606a}code{font-size:12px}
</style></head><body>
<h1>likeness runs</h1>
{{if not .}}<p class="muted">No runs yet. Submit one with <code>likeness submit SPEC</code>.</p>{{else}}
<table><tr><th>run</th><th>state</th><th>progress</th><th>succeeded</th><th>failed</th><th>skipped</th><th>cost</th><th>created</th><th></th></tr>
{{range .}}<tr><td><strong>{{.Name}}</strong><br><code>{{.ID}}</code></td><td>{{.State}}</td>
<td><div class="bar"><span style="width:{{pct .}}%"></span></div><span class="muted">{{.Pending}} pending of {{.Total}}</span></td>
<td>{{.Succeeded}}</td><td{{if .Failed}} class="failed"{{end}}>{{.Failed}}</td><td>{{.Skipped}}</td>
<td>${{printf "%.2f" .CostUSD}}{{if .BudgetUSD}} <span class="muted">of ${{printf "%.2f" .BudgetUSD}}</span>{{end}}</td>
<td class="muted">{{.CreatedAt.Format "2006-01-02 15:04:05"}}</td>
<td>{{if .Report}}<a href="{{.Report}}">report</a>{{end}} <a href="/api/runs/{{.ID}}">json</a></td></tr>{{end}}
</table>{{end}}
</body></html>`))

func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	runs, err := h.recent(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := indexTmpl.Execute(w, runs); err != nil {
		h.cfg.Logger.WarnContext(r.Context(), "render dashboard", "err", err)
	}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.cfg.Logger.ErrorContext(r.Context(), "dashboard request failed", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
