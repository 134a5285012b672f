package dashboard

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"time"
)

// pageFuncs are the templates' helpers.
func pageFuncs() template.FuncMap {
	return template.FuncMap{
		"usd": func(v float64) string { return fmt.Sprintf("$%.2f", v) },
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"ms": func(d time.Duration) int64 { return d.Milliseconds() },
	}
}

// render executes a page template into a buffer first, so a template error
// never sends half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var buf bytes.Buffer
	if err := h.pages.ExecuteTemplate(&buf, name, data); err != nil {
		h.fail(w, r, fmt.Errorf("render %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = buf.WriteTo(w)
}

type indexView struct {
	Path    string
	Runs    []Run
	Refresh time.Duration
	Actions ActionState
}

func (h *Handler) index(w http.ResponseWriter, r *http.Request) {
	runs, err := h.recent(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "index.html", indexView{Path: "/", Runs: runs, Refresh: h.cfg.Refresh, Actions: h.actionState(r)})
}

type runView struct {
	Path    string
	Run     Run
	Refresh time.Duration
	Actions ActionState
}

func (h *Handler) runPage(w http.ResponseWriter, r *http.Request) {
	st, err := h.cfg.Runs.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		if isNotFound(err) {
			http.Error(w, "run not found", http.StatusNotFound)
			return
		}
		h.fail(w, r, err)
		return
	}
	v := h.view(st)
	h.render(w, r, http.StatusOK, "run.html", runView{Path: "/runs/" + v.ID, Run: v, Refresh: h.cfg.Refresh, Actions: h.actionState(r)})
}
