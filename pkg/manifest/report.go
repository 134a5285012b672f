package manifest

import (
	"bytes"
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"path"
	"slices"
	"strconv"

	"github.com/likeness-run/likeness/pkg/store"
)

//go:embed report.html.tmpl
var reportTemplate string

// Report limits and their defaults.
const (
	// DefaultPageImages is ReportOptions.PageImages's default.
	DefaultPageImages = 2000
	// DefaultMaxFailures is ReportOptions.MaxFailures's default.
	DefaultMaxFailures = 200
	// CharactersPerIndexPage is the most characters one index page lists;
	// a run with more gets numbered index pages.
	CharactersPerIndexPage = 500
	// MaxPageBytes is the most HTML one report page holds; character pages
	// are split further when their images would take more.
	MaxPageBytes = 2 << 20
	// thumbPX is the edge of the square box each image is shown in.
	thumbPX = 224
	// maxCardError is the most characters of an error message a card shows.
	maxCardError = 240
	// pageOverhead bounds a page's HTML besides its prompt blocks: styles,
	// header, pager.
	pageOverhead = 64 << 10
)

// ReportOptions says what the report links besides the records' images.
// The zero value is usable: full images scaled by the browser, no sheets,
// default limits.
type ReportOptions struct {
	// Thumbs maps an image's key (an output, a reference, an inpainting
	// image) to the key of its thumbnail. Pages show the thumbnail, lazily
	// loaded, and link the full image; an image without a thumbnail is
	// shown full size, scaled by the browser.
	Thumbs map[string]string
	// Sheets maps a character id to the key of its character sheet.
	Sheets map[string]string
	// PageImages is the most images on one character page; a character
	// with more gets numbered pages. Default DefaultPageImages (2,000).
	PageImages int
	// MaxFailures is the most failed or skipped tasks the index lists; the
	// rest are on the character pages. Default DefaultMaxFailures (200).
	MaxFailures int
}

func (o ReportOptions) withDefaults() ReportOptions {
	if o.PageImages <= 0 {
		o.PageImages = DefaultPageImages
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = DefaultMaxFailures
	}
	return o
}

// CharacterPageKey is page n (from 1) of a character's report pages:
// runs/<run>/report/characters/<character>/index.html, then page-2.html,
// page-3.html... A directory per character keeps every id apart from the
// index and from each other's pages.
func CharacterPageKey(run, character string, n int) string {
	dir := path.Dir(store.ReportKey(run)) + "/characters/" + character + "/"
	if n <= 1 {
		return dir + "index.html"
	}
	return dir + "page-" + strconv.Itoa(n) + ".html"
}

// PutFunc stores one rendered page at key.
type PutFunc func(key string, html []byte) error

// RenderReport renders the run's HTML report and hands each page to put as
// soon as it is rendered, so at most one page is held in memory:
//
//   - one or more pages per character (see CharacterPageKey), each with at
//     most PageImages images and MaxPageBytes of HTML: the reference, then
//     per prompt a row per variant and a column per model, failed and
//     skipped tasks in place with their status and error;
//   - last, the index at store.ReportKey(s.Run): the run's counts, the
//     per-model table, the failures, and a link to every character's pages
//     and sheet.
//
// Pages are self-contained (inline CSS, no scripts, fonts or network
// requests) and link everything by paths relative to their own key, so the
// report works from the bucket, from a downloaded copy of runs/<run>/ and
// refs/, and from the embedded mode's local directory opened with file://.
// Records are deduplicated and sorted first; records is not modified. A
// fan-in that streams its records renders with a ReportWriter instead.
func RenderReport(s Summary, records []Record, opts ReportOptions, put PutFunc) error {
	records = Dedupe(records)
	Sort(records)
	models := map[string]bool{}
	for _, r := range records {
		models[r.Model] = true
	}
	rw, err := NewReportWriter(s, slices.Collect(maps.Keys(models)), opts, put)
	if err != nil {
		return err
	}
	// Records are sorted by character first: one contiguous run each.
	for i := 0; i < len(records); {
		j := i
		for j < len(records) && records[j].Character == records[i].Character {
			j++
		}
		if err := rw.AddCharacter(records[i:j], opts.Thumbs, opts.Sheets[records[i].Character]); err != nil {
			return err
		}
		i = j
	}
	return rw.Close()
}

// ReportWriter renders the report of RenderReport a character at a time,
// for a fan-in that does not hold the run's records: AddCharacter renders
// and stores a character's pages, Close the index. It keeps one row per
// character and the index's failures (at most MaxFailures), not the
// records.
type ReportWriter struct {
	s        Summary
	opts     ReportOptions
	put      PutFunc
	tmpl     *template.Template
	models   []string
	idx      indexView
	indexDir string
	last     string
	closed   bool
}

// NewReportWriter starts the report of the run s summarizes. models are the
// models that have records (in any order; the grid's columns follow the
// summary's order, then the rest sorted). opts's Thumbs and Sheets are not
// used: AddCharacter is given each character's.
func NewReportWriter(s Summary, models []string, opts ReportOptions, put PutFunc) (*ReportWriter, error) {
	if s.Run == "" {
		return nil, errors.New("render report: summary has no run id")
	}
	tmpl, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	return &ReportWriter{
		s: s, opts: opts.withDefaults(), put: put, tmpl: tmpl, models: columns(s, models),
		idx: indexView{S: s, Title: cmp.Or(s.Name, s.Run)}, indexDir: path.Dir(store.ReportKey(s.Run)),
	}, nil
}

// AddCharacter renders and stores the pages of one character: records are
// all its records, deduplicated and sorted (see Sort); thumbs maps its
// images' keys to their thumbnails' (as ReportOptions.Thumbs) and sheet is
// the key of its sheet ("" for none). Characters must come in sorted
// order, each once.
func (w *ReportWriter) AddCharacter(records []Record, thumbs map[string]string, sheet string) error {
	if len(records) == 0 {
		return nil
	}
	id := records[0].Character
	if w.closed || (w.last != "" && id <= w.last) {
		return fmt.Errorf("render report: character %s out of order (after %s) or after Close", id, w.last)
	}
	w.last = id
	opts := w.opts
	opts.Thumbs, opts.Sheets = thumbs, nil
	if sheet != "" {
		opts.Sheets = map[string]string{id: sheet}
	}
	c := newCharacter(w.s.Run, records, w.models, opts)
	pages := c.paginate(opts)
	row := characterRow{ID: c.ID, Counts: c.Counts}
	if sheet != "" {
		row.SheetHref = relURL(w.indexDir, sheet)
	}
	if c.RefKey != "" {
		row.RefHref, row.RefThumb = relURL(w.indexDir, c.RefKey), relURL(w.indexDir, thumbOf(opts, c.RefKey))
	}
	failureKey := map[string]string{} // task -> page key, for failures
	for n, pg := range pages {
		key := CharacterPageKey(w.s.Run, c.ID, n+1)
		row.Pages = append(row.Pages, link{N: n + 1, Href: relURL(w.indexDir, key)})
		for _, p := range pg {
			for _, r := range p.Rows {
				for _, cell := range r.Cells {
					for _, card := range cell {
						if card.R.Status != Succeeded {
							failureKey[card.R.Task] = key
						}
					}
				}
			}
		}
	}
	for n, pg := range pages {
		key := CharacterPageKey(w.s.Run, c.ID, n+1)
		if err := renderPage(w.tmpl, "character", key, c.view(w.s, n+1, len(pages), pg, w.models, opts), w.put); err != nil {
			return err
		}
	}
	w.idx.Characters = append(w.idx.Characters, row)
	for _, r := range records {
		if r.Status == Succeeded {
			continue
		}
		if len(w.idx.Failures) == w.opts.MaxFailures {
			w.idx.MoreFailures++
			continue
		}
		f := failureView{R: r, Err: truncate(r.Error, maxCardError)}
		if key := failureKey[r.Task]; key != "" {
			f.Href = relURL(w.indexDir, key) + "#" + promptAnchor(r.Prompt)
		}
		w.idx.Failures = append(w.idx.Failures, f)
	}
	return nil
}

// Close renders and stores the index, last, as the report's entry.
func (w *ReportWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	idx := w.idx
	// The index lists CharactersPerIndexPage characters a page; the first
	// page also holds the models, failures and unreadable records.
	all := idx.Characters
	pages := max(1, (len(all)+CharactersPerIndexPage-1)/CharactersPerIndexPage)
	idx.Pages, idx.TotalCharacters = pages, len(all)
	if pages > 1 {
		for n := 1; n <= pages; n++ {
			idx.Pager = append(idx.Pager, link{N: n, Href: relURL(w.indexDir, IndexPageKey(w.s.Run, n))})
		}
	}
	for n := pages; n >= 1; n-- { // the first page last, as the report's entry
		idx.Page = n
		idx.Characters = all[(n-1)*CharactersPerIndexPage : min(n*CharactersPerIndexPage, len(all))]
		if err := renderPage(w.tmpl, "index", IndexPageKey(w.s.Run, n), idx, w.put); err != nil {
			return err
		}
	}
	return nil
}

// IndexPageKey is page n (from 1) of the index: store.ReportKey, then
// report/characters-2.html... beside it, so every page links alike.
func IndexPageKey(run string, n int) string {
	if n <= 1 {
		return store.ReportKey(run)
	}
	return path.Dir(store.ReportKey(run)) + "/characters-" + strconv.Itoa(n) + ".html"
}

func renderPage(tmpl *template.Template, name, key string, data any, put PutFunc) error {
	// Render fully before storing, so a template error never leaves half a
	// page in the bucket.
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		return fmt.Errorf("render report page %s: %w", key, err)
	}
	if err := put(key, buf.Bytes()); err != nil {
		return fmt.Errorf("store report page %s: %w", key, err)
	}
	return nil
}

func parseTemplates() (*template.Template, error) {
	tmpl, err := template.New("report").Funcs(template.FuncMap{
		"usd":         formatUSD,
		"ms":          formatMS,
		"pct":         formatPct,
		"wall":        formatWall,
		"when":        formatTime,
		"share":       share,
		"plural":      plural,
		"thumbPX":     func() int { return thumbPX },
		"statusOf":    statusClass,
		"statusLabel": statusLabel,
	}).Parse(reportTemplate)
	if err != nil {
		return nil, fmt.Errorf("render report: parse template: %w", err)
	}
	return tmpl, nil
}

// columns are the grid's models: the summary's order, then models only the
// records know, sorted. A model without records gets no column; the models
// table already says it has no tasks. models are the models with records.
func columns(s Summary, models []string) []string {
	seen := make(map[string]bool, len(models))
	for _, m := range models {
		seen[m] = true
	}
	var out []string
	placed := make(map[string]bool)
	for _, m := range s.Models {
		if seen[m.Model] && !placed[m.Model] {
			placed[m.Model] = true
			out = append(out, m.Model)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(seen)) {
		if !placed[m] {
			out = append(out, m)
		}
	}
	return out
}

// ReportColumns is the order of the report's model columns (and of the
// character sheets'): the summary's models that have records, then any
// other model in models, sorted. models are the models with records.
func ReportColumns(s Summary, models []string) []string { return columns(s, models) }

// thumbOf is the key to show for an image: its thumbnail, or itself.
func thumbOf(opts ReportOptions, key string) string {
	if t := opts.Thumbs[key]; t != "" {
		return t
	}
	return key
}

func promptAnchor(prompt string) string { return "p-" + prompt }

// truncate cuts s to at most n runes, marking the cut.
func truncate(s string, n int) string {
	rs := []rune(s)
	if len(rs) <= n {
		return s
	}
	return string(rs[:n-1]) + "…"
}
