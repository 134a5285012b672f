package manifest

import (
	"bytes"
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/store"
)

//go:embed report.html.tmpl
var reportTemplate string

// thumbPX is the edge of the square box each thumbnail is fitted into in
// the report; the full-size image is one click away.
const thumbPX = 224

// RenderReport writes the run's HTML comparison report, stored at
// store.ReportKey(s.Run). The page is self-contained (inline CSS, no scripts,
// fonts or network requests) and links images by paths relative to its own
// key, so it works from the bucket, from a downloaded copy of runs/<run>/ and
// refs/, and from the embedded mode's local directory opened with file://.
//
// For every character and prompt it shows the character's reference image
// followed by one column per model (in the order of s.Models, then any other
// model seen in records) and one row per variant. Failed and skipped tasks
// appear in place as cards with their status and error. Records are
// deduplicated and sorted first; records is not modified.
func RenderReport(w io.Writer, s Summary, records []Record) error {
	if s.Run == "" {
		return errors.New("render report: summary has no run id")
	}
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
		return fmt.Errorf("render report: parse template: %w", err)
	}
	// Render fully before writing, so a template error never leaves half a
	// page in the bucket.
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, buildReport(s, records)); err != nil {
		return fmt.Errorf("render report %s: %w", s.Run, err)
	}
	if _, err := buf.WriteTo(w); err != nil {
		return fmt.Errorf("write report %s: %w", s.Run, err)
	}
	return nil
}

// reportView is everything the template needs, with links already relative.
type reportView struct {
	S          Summary
	Title      string
	Models     []string
	Characters []characterView
}

type characterView struct {
	ID      string
	Anchor  string
	RefHref string // empty: no reference key in any record
	RefKey  string
	Prompts []promptView
	Counts  counts
}

type counts struct{ Succeeded, Failed, Skipped, Total int }

type promptView struct {
	ID   string
	Text string
	// EditHref and MaskHref link an inpainting prompt's image and mask;
	// empty for other prompts.
	EditHref, MaskHref string
	Rows               []rowView
}

type rowView struct {
	Variant int
	Cells   [][]cardView // one slice per model column; empty when missing
}

type cardView struct {
	R    Record
	Href string // relative link to the output; empty when there is no image
}

func buildReport(s Summary, records []Record) reportView {
	records = Dedupe(records)
	Sort(records)
	fromDir := path.Dir(store.ReportKey(s.Run))

	v := reportView{S: s, Title: cmp.Or(s.Name, s.Run)}
	col := make(map[string]int)
	addModel := func(id string) {
		if _, ok := col[id]; !ok {
			col[id] = len(v.Models)
			v.Models = append(v.Models, id)
		}
	}
	// Columns: the summary's model order, then models only the records
	// know, sorted. A model without records gets no column; the models
	// table already says it has no tasks.
	seen := make(map[string]bool)
	for _, r := range records {
		seen[r.Model] = true
	}
	for _, m := range s.Models {
		if seen[m.Model] {
			addModel(m.Model)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(seen)) {
		addModel(m) // no-op for models already placed
	}

	// Records are sorted by character, then prompt, then model, then variant,
	// so each character and prompt is one contiguous run of records.
	for i := 0; i < len(records); {
		c := characterView{ID: records[i].Character, Anchor: "c-" + records[i].Character}
		for i < len(records) && records[i].Character == c.ID {
			p := promptView{ID: records[i].Prompt}
			rows := make(map[int]*rowView)
			for ; i < len(records) && records[i].Character == c.ID && records[i].Prompt == p.ID; i++ {
				r := records[i]
				if c.RefKey == "" && r.ReferenceKey != "" {
					c.RefKey = r.ReferenceKey
					c.RefHref = relURL(fromDir, r.ReferenceKey)
				}
				if p.Text == "" {
					p.Text = r.PromptText
				}
				if p.EditHref == "" && r.EditImageKey != "" && r.EditMaskKey != "" {
					p.EditHref, p.MaskHref = relURL(fromDir, r.EditImageKey), relURL(fromDir, r.EditMaskKey)
				}
				c.Counts.Total++
				switch {
				case r.Status == Succeeded:
					c.Counts.Succeeded++
				case r.Status == Failed:
					c.Counts.Failed++
				case r.Status.Skipped():
					c.Counts.Skipped++
				}
				row, ok := rows[r.Variant]
				if !ok {
					row = &rowView{Variant: r.Variant, Cells: make([][]cardView, len(v.Models))}
					rows[r.Variant] = row
				}
				card := cardView{R: r}
				if r.Status == Succeeded && r.OutputKey != "" {
					card.Href = relURL(fromDir, r.OutputKey)
				}
				row.Cells[col[r.Model]] = append(row.Cells[col[r.Model]], card)
			}
			for _, variant := range slices.Sorted(maps.Keys(rows)) {
				p.Rows = append(p.Rows, *rows[variant])
			}
			c.Prompts = append(c.Prompts, p)
		}
		v.Characters = append(v.Characters, c)
	}
	return v
}

// relKey returns the path of object key relative to the directory fromDir,
// both slash-separated keys from the bucket root: relKey("runs/r/report",
// "refs/x.png") is "../../../refs/x.png".
func relKey(fromDir, key string) string {
	from := splitKey(fromDir)
	to := splitKey(key)
	common := 0
	for common < len(from) && common < len(to) && from[common] == to[common] {
		common++
	}
	parts := make([]string, 0, len(from)-common+len(to)-common)
	for range from[common:] {
		parts = append(parts, "..")
	}
	parts = append(parts, to[common:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}

func splitKey(k string) []string {
	k = path.Clean("/" + k)[1:]
	if k == "" {
		return nil
	}
	return strings.Split(k, "/")
}

// relURL is relKey as a URL path: each segment percent-escaped, so a key
// element holding '#', '?' or '%' still names the file.
func relURL(fromDir, key string) string {
	parts := strings.Split(relKey(fromDir, key), "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// formatUSD prints a dollar amount with at least two decimals and at most
// four: $0.04, $0.0035, $12.50.
func formatUSD(v float64) string {
	s := strconv.FormatFloat(roundTo(v, 4), 'f', -1, 64)
	if i := strings.IndexByte(s, '.'); i < 0 {
		s += ".00"
	} else if len(s)-i-1 < 2 {
		s += strings.Repeat("0", 2-(len(s)-i-1))
	}
	return "$" + s
}

func roundTo(v float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(v*p) / p
}

// formatMS prints a latency: 850 ms, 12.3 s, 2m 05s.
func formatMS(ms int64) string {
	switch {
	case ms <= 0:
		return "–"
	case ms < 1000:
		return fmt.Sprintf("%d ms", ms)
	case ms < 60_000:
		return fmt.Sprintf("%.1f s", float64(ms)/1000)
	default:
		d := time.Duration(ms) * time.Millisecond
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
}

// formatWall prints a run's wall time in seconds: 42.0 s, 3m 07s, 2h 03m.
func formatWall(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case s <= 0:
		return "–"
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", s)
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func formatPct(rate float64) string { return fmt.Sprintf("%.0f%%", rate*100) }

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// share is n as a percentage of total, for bar widths.
func share(n, total int) float64 {
	if total <= 0 {
		return 0
	}
	return roundTo(float64(n)*100/float64(total), 2)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// statusClass maps a status to a CSS class name from a fixed set.
func statusClass(s Status) string {
	switch {
	case s == Succeeded:
		return "ok"
	case s == Failed:
		return "failed"
	case s.Skipped():
		return "skipped"
	default:
		return "unknown"
	}
}

// statusLabel is a status as a reader would say it.
func statusLabel(s Status) string {
	switch s {
	case SkippedBudget:
		return "skipped · budget"
	case SkippedCanceled:
		return "skipped · canceled"
	case "":
		return "no status"
	default:
		return string(s)
	}
}
