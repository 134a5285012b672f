// Package dashboard is what `likeness serve` (and `likeness run --serve`)
// shows while runs work and after they end: a runs list and a page per run
// that refresh themselves, a JSON API over the same views, and the run
// artifacts (report, images, records, manifest) served straight from the
// store, so a run can be followed and its report opened from a browser in
// either mode.
//
// It reads the run state workers keep in Redis (pkg/runstate), the records
// they store when each task ends (runs/<run>/records/<task>.json, or the
// manifest once the fan-in has run), the fleet limits' live state
// (pkg/ratelimit) and the queues' depth (asynq's Inspector). It serves
// nothing under cache/ and no secret.
//
// It also acts on runs: cancel, pause and resume (workers requeue a paused
// run's tasks without spending attempts), retry failed and skipped tasks,
// and raise the budget. Actions are POST only, refused across sites (net/http's
// CrossOriginProtection), and need the operator's token
// (LIKENESS_DASHBOARD_TOKEN), as a bearer header or through the login
// form's HttpOnly, SameSite=Strict session cookie. Without a token actions
// are off.
package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"golang.org/x/time/rate"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Blobs is the read side of the object store.
type Blobs interface {
	Get(ctx context.Context, key string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]store.Info, error)
}

// QueueInspector reads a queue's depth; *asynq.Inspector satisfies it.
type QueueInspector interface {
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

// Config configures the dashboard. Runs and Store are required.
type Config struct {
	Runs  *runstate.Store
	Store Blobs
	// Limiter reads the fleet limits' live state. Nil: the run page shows
	// the limits in force without their state.
	Limiter *ratelimit.Limiter
	// Limits are the operator's limit overrides (LIKENESS_LIMITS).
	Limits ratelimit.Overrides
	// Registry maps a run's model refs to providers and limits. Default
	// provider.DefaultRegistry().
	Registry *provider.Registry
	// Queues reads queue depth. Nil: no queue table.
	Queues QueueInspector
	// Retry puts a run's failed and skipped tasks back in the queue and
	// returns how many (scheduler.Retry). Nil: the retry action answers 501.
	Retry func(ctx context.Context, run string) (int, error)
	// Token is the operator's token (LIKENESS_DASHBOARD_TOKEN). Empty turns
	// every action off; reads stay open.
	Token string
	// Recent is how many runs the index lists. Default 50.
	Recent int
	// Refresh is how often the pages fetch fresh data. Default 1.5s; at
	// most 2s.
	Refresh time.Duration
	// SessionTTL is how long a login lasts. Default 12h.
	SessionTTL time.Duration
	// CachedRuns is how many runs' records are kept in memory between
	// refreshes. Default 16.
	CachedRuns int
	// Logger receives request errors and actions. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.Runs == nil {
		return c, errors.New("dashboard: Config.Runs is required")
	}
	if c.Store == nil {
		return c, errors.New("dashboard: Config.Store is required")
	}
	if c.Registry == nil {
		c.Registry = provider.DefaultRegistry()
	}
	if c.Recent <= 0 {
		c.Recent = 50
	}
	if c.Refresh <= 0 || c.Refresh > 2*time.Second {
		c.Refresh = 1500 * time.Millisecond
	}
	if c.SessionTTL <= 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.CachedRuns <= 0 {
		c.CachedRuns = 16
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Handler serves the dashboard.
type Handler struct {
	cfg     Config
	pages   *template.Template
	records *recordCache
	guesses *rate.Limiter // wrong tokens, server-wide
	root    http.Handler
}

// New returns the dashboard handler.
func New(cfg Config) (*Handler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pages, err := template.New("pages").Funcs(pageFuncs()).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard: parse templates: %w", err)
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("dashboard: static files: %w", err)
	}
	h := &Handler{cfg: cfg, pages: pages, records: newRecordCache(cfg.Store, cfg.Runs, cfg.CachedRuns), guesses: newGuessLimiter()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.index)
	mux.HandleFunc("GET /runs/{id}", h.runPage)
	mux.HandleFunc("GET /login", h.loginPage)
	mux.HandleFunc("POST /login", h.login)
	mux.HandleFunc("POST /logout", h.logout)
	mux.HandleFunc("GET /api/runs", h.apiRuns)
	mux.HandleFunc("GET /api/runs/{id}", h.apiRun)
	mux.HandleFunc("GET /api/runs/{id}/detail", h.apiDetail)
	mux.HandleFunc("GET /api/runs/{id}/gallery", h.apiGallery)
	mux.HandleFunc("GET /api/runs/{id}/records/{task}", h.apiRecord)
	mux.HandleFunc("POST /api/runs/{id}/{action}", h.action)
	mux.HandleFunc("GET /files/{key...}", h.file)
	mux.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(http.FileServerFS(static))))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	// Every unsafe method (the actions, login, logout) is refused when the
	// browser says the request comes from another site.
	h.root = http.NewCrossOriginProtection().Handler(mux)
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "same-origin")
	hdr.Set("X-Frame-Options", "DENY")
	h.root.ServeHTTP(w, r)
}

// pageCSP is the pages' content security policy: their own scripts and
// styles only, images from this server.
const pageCSP = "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func staticHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

// file serves run artifacts and references from the store. Only keys under
// runs/ and refs/ are served, never the cache index.
func (h *Handler) file(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !servable(key) {
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
	// Stored HTML (the report) may style itself but never run a script.
	w.Header().Set("Content-Security-Policy", "script-src 'none'; object-src 'none'; frame-ancestors 'none'")
	w.Header().Set("Cache-Control", "private, max-age=5")
	_, _ = w.Write(data)
}

// servable reports whether key may be read through the dashboard: run
// artifacts and references, nothing else (never cache/).
func servable(key string) bool {
	return store.CheckKey(key) == nil && (strings.HasPrefix(key, "runs/") || strings.HasPrefix(key, "refs/"))
}

// fileURL is the dashboard path of a stored object.
func fileURL(key string) string {
	if key == "" {
		return ""
	}
	return "/files/" + key
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	h.cfg.Logger.ErrorContext(r.Context(), "dashboard request failed", "path", r.URL.Path, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
