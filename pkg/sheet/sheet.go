// Package sheet draws character sheets: one PNG per character that shows
// its reference image and then a labelled grid of what every model made of
// every prompt, so a reader sees at a glance which models keep the
// character recognisable.
//
// The fan-in (run:finalize) builds a Sheet per character from the run's
// records and the stored images, renders it with Render and stores it at
// runs/<run>/sheets/<character>.png, linked from the report. Cells whose
// task failed, was skipped or left no record are drawn as marked
// placeholders, never left blank, so a missing image is never mistaken for
// a dark one. Text is set in the Go fonts (golang.org/x/image/font/gofont),
// so rendering needs no system fonts.
package sheet

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"sync"
)

// Mark says what a cell without an image shows.
type Mark int

// Cell marks.
const (
	// MarkNone is a cell with an image.
	MarkNone Mark = iota
	// MarkFailed is a task that failed for good: red, crossed out.
	MarkFailed
	// MarkSkipped is a task never sent (budget or cancellation): amber,
	// crossed out.
	MarkSkipped
	// MarkMissing is a task with no record, or a succeeded task whose image
	// could not be read: grey, crossed out.
	MarkMissing
)

// Cell is one grid position: an image, or a mark with a short label.
type Cell struct {
	// Image is the output. When nil, Open is called to get it, so a caller
	// need not hold every image of a large grid at once; with neither, the
	// cell draws Mark (MarkMissing when Mark is MarkNone).
	Image image.Image
	// Open returns the image when Render draws the cell; an error draws
	// MarkMissing with the label "unreadable image".
	Open func() (image.Image, error)
	Mark Mark
	// Label is printed in a marked cell, e.g. "failed · SAFETY".
	Label string
}

// Row is one prompt.
type Row struct {
	// Label is the prompt id, printed in bold.
	Label string
	// Text is the prompt text, printed below the label and cut to fit.
	Text string
}

// Sheet is what Render draws.
type Sheet struct {
	// Title heads the sheet, typically the character id.
	Title string
	// Subtitle is printed beside the title, e.g. the run id.
	Subtitle string
	// Note is printed beside the reference, e.g. what the grid leaves out.
	Note string
	// Reference is the character's reference image; nil draws a grey
	// placeholder.
	Reference image.Image
	// Columns label the grid's columns (models, or model and variant).
	Columns []string
	// Rows label the grid's rows (prompts).
	Rows []Row
	// Cells holds len(Rows) rows of len(Columns) cells each.
	Cells [][]Cell
}

// Layout geometry, in pixels.
const (
	// MaxCell is the edge of a grid cell when the grid fits in MaxWidth.
	MaxCell = 256
	// MinCell is the smallest edge a cell shrinks to in wide grids.
	MinCell = 64
	// MaxWidth is the widest a grid gets before its cells shrink.
	MaxWidth = 8192
	// MaxHeight is the tallest a grid gets before its cells shrink; a
	// sheet holds at most MaxRows rows.
	MaxHeight = 16384
	// MaxRows is the most rows a sheet holds: MinCell cells up to MaxHeight.
	MaxRows = (MaxHeight - gridTop - margin) / (MinCell + gap)
	gridTop = margin + titleH + refEdge + 2*gap + headerH
	margin  = 24
	gap     = 8
	titleH  = 40
	headerH = 28
	labelW  = 220
	refEdge = 256
)

// Colours of the sheet. They are functions, not variables, so nothing in
// the package can be changed from outside.
func rgb(r, g, b uint8) color.RGBA { return color.RGBA{r, g, b, 0xff} }

func background() color.RGBA { return rgb(0xff, 0xff, 0xff) }
func cellBG() color.RGBA     { return rgb(0xee, 0xf0, 0xf3) }
func textInk() color.RGBA    { return rgb(0x11, 0x18, 0x27) }
func mutedInk() color.RGBA   { return rgb(0x6b, 0x72, 0x80) }
func accent() color.RGBA     { return rgb(0x4f, 0x46, 0xe5) }

// Fill is the background of a marked cell: red for failed, amber for
// skipped, grey for missing. Readers (and tests) tell marks apart by it.
func (m Mark) Fill() color.RGBA {
	switch m {
	case MarkFailed:
		return rgb(0xfe, 0xe2, 0xe2)
	case MarkSkipped:
		return rgb(0xfe, 0xf3, 0xc7)
	default:
		return rgb(0xe5, 0xe7, 0xeb)
	}
}

// Ink is the colour of a marked cell's cross and label.
func (m Mark) Ink() color.RGBA {
	switch m {
	case MarkFailed:
		return rgb(0xb9, 0x1c, 0x1c)
	case MarkSkipped:
		return rgb(0x92, 0x40, 0x0e)
	default:
		return rgb(0x6b, 0x72, 0x80)
	}
}

// Layout is where Render puts things, so callers and tests can find a
// cell in the image.
type Layout struct {
	// Size is the whole sheet.
	Size image.Point
	// Reference is the box the reference image is fitted into.
	Reference image.Rectangle
	// Cell is a grid cell's edge.
	Cell int
	// Grid is the top-left corner of cell (0, 0).
	Grid       image.Point
	rows, cols int
}

// CellRect is the square of the cell in row r and column c.
func (l Layout) CellRect(r, c int) image.Rectangle {
	x := l.Grid.X + c*(l.Cell+gap)
	y := l.Grid.Y + r*(l.Cell+gap)
	return image.Rect(x, y, x+l.Cell, y+l.Cell)
}

// Layout computes the geometry of s. It does not check s.
func (s *Sheet) Layout() Layout {
	cols, rows := len(s.Columns), len(s.Rows)
	cell := MaxCell
	if cols > 0 {
		if fit := (MaxWidth - labelW - 2*margin) / cols; fit-gap < cell {
			cell = max(MinCell, fit-gap)
		}
	}
	if rows > 0 {
		if fit := (MaxHeight - gridTop - margin) / rows; fit-gap < cell {
			cell = max(MinCell, fit-gap)
		}
	}
	l := Layout{Cell: cell, rows: rows, cols: cols}
	l.Reference = image.Rect(margin, margin+titleH, margin+refEdge, margin+titleH+refEdge)
	l.Grid = image.Pt(margin+labelW, gridTop)
	gridW := cols*(cell+gap) - gap
	gridH := rows*(cell+gap) - gap
	l.Size = image.Pt(max(l.Grid.X+gridW, l.Reference.Max.X, 640)+margin, l.Grid.Y+max(gridH, 0)+margin)
	return l
}

func (s *Sheet) check() error {
	switch {
	case len(s.Columns) == 0:
		return errors.New("sheet has no columns")
	case len(s.Rows) == 0:
		return errors.New("sheet has no rows")
	case len(s.Rows) > MaxRows:
		return fmt.Errorf("sheet has %d rows; at most %d fit", len(s.Rows), MaxRows)
	case len(s.Cells) != len(s.Rows):
		return fmt.Errorf("sheet has %d rows of cells for %d rows", len(s.Cells), len(s.Rows))
	}
	for i, row := range s.Cells {
		if len(row) != len(s.Columns) {
			return fmt.Errorf("sheet row %d has %d cells for %d columns", i, len(row), len(s.Columns))
		}
	}
	return nil
}

// Encode renders s and writes it as an RGB PNG (a sheet has no
// transparency: Render paints the whole canvas, then draws over it).
// The canvas is kept for the next sheet: a sheet of 100 prompts is a
// 58 MB image, which the runtime would otherwise zero, and the kernel map
// again, for every character of a run.
func Encode(w io.Writer, s *Sheet) error {
	img, err := render(s, canvases.Get)
	if err != nil {
		return err
	}
	defer canvases.Put(img)
	if err := encodeRGB(w, img); err != nil {
		return fmt.Errorf("encode sheet %s: %w", s.Title, err)
	}
	return nil
}

// canvasPool keeps the canvases of sheets encoded, for the next to draw on.
type canvasPool struct{ p sync.Pool }

// canvases is the package's pool: the fan-in encodes sheets one after the
// other, a few at a time.
var canvases canvasPool

// Get returns a canvas of r's size whose pixels are undefined: a kept one
// when one is large enough, else a new one.
func (c *canvasPool) Get(r image.Rectangle) *image.RGBA {
	n := 4 * r.Dx() * r.Dy()
	if pix, ok := c.p.Get().(*[]byte); ok && cap(*pix) >= n {
		return &image.RGBA{Pix: (*pix)[:n], Stride: 4 * r.Dx(), Rect: r}
	}
	// A kept canvas too small for this sheet is dropped.
	return image.NewRGBA(r)
}

// Put keeps img's pixels for a later Get.
func (c *canvasPool) Put(img *image.RGBA) {
	pix := img.Pix
	c.p.Put(&pix)
}
