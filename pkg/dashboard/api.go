package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

// Gallery page sizes.
const (
	defaultGalleryLimit = 120
	maxGalleryLimit     = 1000
)

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
		out = append(out, h.view(st))
	}
	return out, nil
}

// getRun reads the run named in the path; it answers 404 itself.
func (h *Handler) getRun(w http.ResponseWriter, r *http.Request) (*runstate.Status, bool) {
	st, err := h.cfg.Runs.Get(r.Context(), r.PathValue("id"))
	if errors.Is(err, runstate.ErrNotFound) {
		jsonError(w, http.StatusNotFound, "run not found")
		return nil, false
	}
	if err != nil {
		h.fail(w, r, err)
		return nil, false
	}
	return st, true
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
	st, ok := h.getRun(w, r)
	if !ok {
		return
	}
	writeJSON(w, h.view(st))
}

func (h *Handler) apiDetail(w http.ResponseWriter, r *http.Request) {
	st, ok := h.getRun(w, r)
	if !ok {
		return
	}
	recs, err := h.records.Records(r.Context(), st, h.cfg.Now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	d, err := h.detail(r.Context(), st, recs, h.actionState(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, d)
}

// Gallery is one page of a run's finished tasks, filtered.
type Gallery struct {
	// Total is the number of finished tasks; Matched those the filter keeps.
	Total   int `json:"total"`
	Matched int `json:"matched"`
	Offset  int `json:"offset"`
	// Facets are the values each filter can take, with their counts over
	// every finished task.
	Facets map[string][]Facet `json:"facets"`
	// References maps a character to its reference image's URL.
	References map[string]string `json:"references"`
	Items      []GalleryItem     `json:"items"`
}

// Facet is one filter value.
type Facet struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

// GalleryItem is one finished task as the gallery shows it.
type GalleryItem struct {
	Task       string  `json:"task"`
	Character  string  `json:"character"`
	Prompt     string  `json:"prompt"`
	PromptText string  `json:"prompt_text"`
	Model      string  `json:"model"`
	Variant    int     `json:"variant"`
	Status     string  `json:"status"`
	Image      string  `json:"image,omitempty"`
	Width      int     `json:"width,omitempty"`
	Height     int     `json:"height,omitempty"`
	ErrorClass string  `json:"error_class,omitempty"`
	Error      string  `json:"error,omitempty"`
	CostUSD    float64 `json:"cost_usd"`
	LatencyMS  int64   `json:"latency_ms"`
	Attempts   int     `json:"attempts"`
	Cached     bool    `json:"cached"`
}

// facetNames are the gallery's filters, in the order the page shows them.
func facetNames() [4]string { return [4]string{"character", "prompt", "model", "status"} }

func facetValue(r *manifest.Record, name string) string {
	switch name {
	case "character":
		return r.Character
	case "prompt":
		return r.Prompt
	case "model":
		return r.Model
	default:
		return string(r.Status)
	}
}

func (h *Handler) apiGallery(w http.ResponseWriter, r *http.Request) {
	st, ok := h.getRun(w, r)
	if !ok {
		return
	}
	recs, err := h.records.Records(r.Context(), st, h.cfg.Now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	q := r.URL.Query()
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		limit = defaultGalleryLimit
	}
	limit = min(limit, maxGalleryLimit)
	offset = max(offset, 0)
	g := Gallery{Total: len(recs), Offset: offset, Facets: map[string][]Facet{}, References: map[string]string{}, Items: []GalleryItem{}}
	counts := map[string]map[string]int{}
	for _, name := range facetNames() {
		counts[name] = map[string]int{}
	}
	for i := range recs {
		rec := &recs[i]
		for _, name := range facetNames() {
			counts[name][facetValue(rec, name)]++
		}
		if _, ok := g.References[rec.Character]; !ok && servable(rec.ReferenceKey) {
			g.References[rec.Character] = fileURL(rec.ReferenceKey)
		}
		if !matches(rec, q) {
			continue
		}
		g.Matched++
		if g.Matched <= offset || len(g.Items) >= limit {
			continue
		}
		item := GalleryItem{
			Task: rec.Task, Character: rec.Character, Prompt: rec.Prompt, PromptText: rec.PromptText,
			Model: rec.Model, Variant: rec.Variant, Status: string(rec.Status), Width: rec.Width, Height: rec.Height,
			ErrorClass: rec.ErrorClass, Error: rec.Error, CostUSD: rec.CostUSD, LatencyMS: rec.ProviderLatencyMS,
			Attempts: rec.Attempts, Cached: rec.Cached,
		}
		if rec.Status == manifest.Succeeded && servable(rec.OutputKey) {
			item.Image = fileURL(rec.OutputKey)
		}
		g.Items = append(g.Items, item)
	}
	for name, c := range counts {
		fs := make([]Facet, 0, len(c))
		for v, n := range c {
			fs = append(fs, Facet{Value: v, Count: n})
		}
		slices.SortFunc(fs, func(a, b Facet) int { return cmp.Compare(a.Value, b.Value) })
		g.Facets[name] = fs
	}
	writeJSON(w, g)
}

// matches applies the gallery's filters: every given facet must equal.
func matches(rec *manifest.Record, q map[string][]string) bool {
	for _, name := range facetNames() {
		if want := q[name]; len(want) > 0 && want[0] != "" && facetValue(rec, name) != want[0] {
			return false
		}
	}
	return true
}

// apiRecord answers one task's full record: seed, attempts and their
// classes, cost, latency, trace id.
func (h *Handler) apiRecord(w http.ResponseWriter, r *http.Request) {
	st, ok := h.getRun(w, r)
	if !ok {
		return
	}
	taskID := r.PathValue("task")
	key := store.RecordKey(st.ID, taskID)
	if !servable(key) {
		jsonError(w, http.StatusNotFound, "no such task")
		return
	}
	recs, err := h.records.Records(r.Context(), st, h.cfg.Now())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	for i := range recs {
		if recs[i].Task == taskID {
			writeJSON(w, recs[i])
			return
		}
	}
	// Finished since the last refresh: read it directly.
	raw, err := h.cfg.Store.Get(r.Context(), key)
	if errors.Is(err, store.ErrNotExist) {
		jsonError(w, http.StatusNotFound, "task "+taskID+" has not finished")
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var rec manifest.Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, rec)
}

func isNotFound(err error) bool { return errors.Is(err, runstate.ErrNotFound) }
