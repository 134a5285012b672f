package manifest

import (
	"html/template"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/likeness-run/likeness/pkg/store"
)

// indexView is the index page.
type indexView struct {
	S     Summary
	Title string
	// Page of Pages; Pager links every page when there are several.
	Page, Pages     int
	Pager           []link
	TotalCharacters int
	Characters      []characterRow
	Failures        []failureView
	MoreFailures    int
}

type characterRow struct {
	ID                string
	Counts            counts
	Pages             []link
	SheetHref         string
	RefHref, RefThumb string
}

type link struct {
	N    int
	Href string
}

type failureView struct {
	R    Record
	Err  string
	Href string // the character page and prompt; empty if not paged
}

type counts struct{ Succeeded, Failed, Skipped, Total int }

func (c *counts) add(s Status) {
	c.Total++
	switch {
	case s == Succeeded:
		c.Succeeded++
	case s == Failed:
		c.Failed++
	case s.Skipped():
		c.Skipped++
	}
}

// pageView is one character page.
type pageView struct {
	S                 Summary
	Title             string
	IndexHref         string
	ID                string
	Counts            counts
	SheetHref         string
	RefHref, RefThumb string
	Page, Pages       int
	Pager             []link
	Models            []string
	Prompts           []promptView
}

type promptView struct {
	ID, Anchor, Text string
	Continued        bool
	// EditHref, EditThumb and MaskHref link an inpainting prompt's image
	// and mask; empty for other prompts.
	EditHref, EditThumb, MaskHref string
	Rows                          []rowView
	// est is the block's estimated HTML size without its rows.
	est int
}

type rowView struct {
	Variant int
	Cells   [][]cardView // one slice per model column; empty when missing
	images  int
	est     int
}

type cardView struct {
	R     Record
	Href  string // full image; empty when there is no image
	Thumb string // what the card shows
	Err   string // the error, cut to maxCardError
	// Name ("kontext v0"), Class and Label (the status's CSS class and
	// words) and Caption ("seed 42 · 1.2 s · 1 attempt") are computed here
	// rather than in the template: pages hold thousands of cards.
	Name, Class, Label, Caption string
}

func newCard(r Record) cardView {
	c := cardView{R: r, Err: truncate(r.Error, maxCardError), Class: statusClass(r.Status), Label: statusLabel(r.Status),
		Name: r.Model + " v" + strconv.Itoa(r.Variant)}
	var b strings.Builder
	b.WriteString("seed ")
	b.WriteString(strconv.FormatInt(r.Seed, 10))
	if r.ProviderLatencyMS > 0 {
		b.WriteString(" · ")
		b.WriteString(formatMS(r.ProviderLatencyMS))
	}
	b.WriteString(" · ")
	switch {
	case r.Attempts > 0:
		b.WriteString(plural(r.Attempts, "attempt", "attempts"))
	case r.Cached:
		b.WriteString("no provider call")
	default:
		b.WriteString("not sent")
	}
	c.Caption = b.String()
	return c
}

// character is one character's records arranged as prompt blocks, with
// links relative to its pages' directory.
type character struct {
	ID      string
	RefKey  string
	Counts  counts
	prompts []promptView
	dir     string
}

// newCharacter arranges one character's sorted records.
func newCharacter(run string, records []Record, models []string, opts ReportOptions) *character {
	col := make(map[string]int, len(models))
	for i, m := range models {
		col[m] = i
	}
	c := &character{ID: records[0].Character, dir: path.Dir(CharacterPageKey(run, records[0].Character, 1))}
	for i := 0; i < len(records); {
		p := promptView{ID: records[i].Prompt, Anchor: promptAnchor(records[i].Prompt)}
		rows := make(map[int]*rowView)
		for ; i < len(records) && records[i].Prompt == p.ID; i++ {
			r := records[i]
			if c.RefKey == "" && r.ReferenceKey != "" {
				c.RefKey = r.ReferenceKey
			}
			if p.Text == "" {
				p.Text = r.PromptText
			}
			if p.EditHref == "" && r.EditImageKey != "" && r.EditMaskKey != "" {
				p.EditHref, p.MaskHref = relURL(c.dir, r.EditImageKey), relURL(c.dir, r.EditMaskKey)
				p.EditThumb = relURL(c.dir, thumbOf(opts, r.EditImageKey))
			}
			c.Counts.add(r.Status)
			row, ok := rows[r.Variant]
			if !ok {
				row = &rowView{Variant: r.Variant, Cells: make([][]cardView, len(models)), est: 120}
				rows[r.Variant] = row
			}
			card := newCard(r)
			if r.Status == Succeeded && r.OutputKey != "" {
				card.Href = relURL(c.dir, r.OutputKey)
				card.Thumb = relURL(c.dir, thumbOf(opts, r.OutputKey))
			}
			row.Cells[col[r.Model]] = append(row.Cells[col[r.Model]], card)
			row.images++
			row.est += card.size()
		}
		for _, v := range slices.Sorted(maps.Keys(rows)) {
			p.Rows = append(p.Rows, *rows[v])
		}
		p.est = 1500 + 2*htmlLen(p.Text) + 3*len(p.EditHref) + len(p.MaskHref) + 200*len(models)
		for _, m := range models {
			p.est += 2 * htmlLen(m)
		}
		c.prompts = append(c.prompts, p)
	}
	return c
}

// size estimates a card's HTML from above: fixed markup plus every string
// it prints, escaped, as often as the template prints it.
func (c cardView) size() int {
	return 600 + htmlLen(c.Href) + htmlLen(c.Thumb) + 3*htmlLen(c.R.Model) + htmlLen(c.R.ErrorClass) +
		htmlLen(c.Err) + 2*len(c.Class) + len(c.Label) + htmlLen(c.Caption)
}

// htmlLen is the length of s once escaped for HTML text or attributes.
func htmlLen(s string) int { return len(template.HTMLEscapeString(s)) }

// paginate splits the character's prompt blocks into pages of at most
// PageImages images (each block's reference counts as one) and about
// MaxPageBytes of HTML, breaking between variant rows. A block cut by a
// page break continues on the next page under its heading.
func (c *character) paginate(opts ReportOptions) [][]promptView {
	var pages [][]promptView
	var cur []promptView
	images, bytes := 0, pageOverhead
	for _, p := range c.prompts {
		part := p
		part.Rows = nil
		for _, row := range p.Rows {
			add, addBytes := row.images, row.est
			if len(part.Rows) == 0 {
				add++ // the reference beside the block
				addBytes += p.est
			}
			if (images+add > opts.PageImages || bytes+addBytes > MaxPageBytes) && (len(cur) > 0 || len(part.Rows) > 0) {
				continued := len(part.Rows) > 0
				if continued {
					cur = append(cur, part)
				}
				pages = append(pages, cur)
				cur, images, bytes = nil, 0, pageOverhead
				part.Rows, part.Continued = nil, continued
				add, addBytes = row.images+1, row.est+p.est
			}
			part.Rows = append(part.Rows, row)
			images += add
			bytes += addBytes
		}
		if len(part.Rows) > 0 {
			cur = append(cur, part)
		}
	}
	if len(cur) > 0 || len(pages) == 0 {
		pages = append(pages, cur)
	}
	return pages
}

// view is page n of pages for the template.
func (c *character) view(s Summary, n, pages int, prompts []promptView, models []string, opts ReportOptions) pageView {
	v := pageView{
		S: s, Title: s.Name, ID: c.ID, Counts: c.Counts, Page: n, Pages: pages,
		IndexHref: relURL(c.dir, store.ReportKey(s.Run)), Models: models, Prompts: prompts,
	}
	if v.Title == "" {
		v.Title = s.Run
	}
	if k := opts.Sheets[c.ID]; k != "" {
		v.SheetHref = relURL(c.dir, k)
	}
	if c.RefKey != "" {
		v.RefHref, v.RefThumb = relURL(c.dir, c.RefKey), relURL(c.dir, thumbOf(opts, c.RefKey))
	}
	if pages > 1 {
		for i := 1; i <= pages; i++ {
			v.Pager = append(v.Pager, link{N: i, Href: relURL(c.dir, CharacterPageKey(s.Run, c.ID, i))})
		}
	}
	return v
}
