package sheet_test

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/png"
	"strings"
	"testing"

	"github.com/likeness-run/likeness/pkg/sheet"
)

func solid(w, h int, c color.RGBA) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img
}

// near reports whether two colours differ by at most 3 per channel.
func near(a color.Color, b color.RGBA) bool {
	r, g, bl, _ := a.RGBA()
	d := func(x uint32, y uint8) bool { v := int(x>>8) - int(y); return v >= -3 && v <= 3 }
	return d(r, b.R) && d(g, b.G) && d(bl, b.B)
}

func TestRenderGrid(t *testing.T) {
	t.Parallel()
	colours := []color.RGBA{{200, 30, 30, 255}, {30, 160, 60, 255}, {40, 60, 220, 255}}
	s := &sheet.Sheet{
		Title: "mara", Subtitle: "run quickstart-1", Reference: solid(300, 400, color.RGBA{250, 200, 0, 255}),
		Columns: []string{"kontext", "ideogram", "a-model-with-a-very-long-name-that-will-not-fit"},
		Rows: []sheet.Row{
			{Label: "piano", Text: "the person is playing the piano in a sunlit living room"},
			{Label: "anime", Text: strings.Repeat("restyle this person as an anime character ", 30)},
		},
	}
	s.Cells = [][]sheet.Cell{
		{{Image: solid(512, 512, colours[0])}, {Image: solid(384, 512, colours[1])}, {Mark: sheet.MarkFailed, Label: "failed · SAFETY"}},
		{{Mark: sheet.MarkSkipped, Label: "skipped · budget"}, {}, {Image: solid(640, 360, colours[2])}},
	}
	var buf bytes.Buffer
	if err := sheet.Encode(&buf, s); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("decode sheet: %v", err)
	}
	l := s.Layout()
	if img.Bounds().Size() != l.Size {
		t.Fatalf("sheet is %v, layout says %v", img.Bounds().Size(), l.Size)
	}
	if l.Cell != sheet.MaxCell {
		t.Errorf("cell = %d, want %d for a 3-column grid", l.Cell, sheet.MaxCell)
	}
	at := func(r image.Rectangle, fx, fy float64) color.Color {
		return img.At(r.Min.X+int(fx*float64(r.Dx())), r.Min.Y+int(fy*float64(r.Dy())))
	}
	if c := at(l.Reference, .5, .5); !near(c, color.RGBA{250, 200, 0, 255}) {
		t.Errorf("reference centre is %v, want the reference's colour", c)
	}
	wantImage := map[[2]int]color.RGBA{{0, 0}: colours[0], {0, 1}: colours[1], {1, 2}: colours[2]}
	wantMark := map[[2]int]sheet.Mark{{0, 2}: sheet.MarkFailed, {1, 0}: sheet.MarkSkipped, {1, 1}: sheet.MarkMissing}
	for rc, want := range wantImage {
		r := l.CellRect(rc[0], rc[1])
		if c := at(r, .5, .5); !near(c, want) {
			t.Errorf("cell %v centre is %v, want image colour %v", rc, c, want)
		}
	}
	for rc, m := range wantMark {
		r := l.CellRect(rc[0], rc[1])
		if c := at(r, .5, .22); !near(c, m.Fill()) {
			t.Errorf("cell %v fill is %v, want mark %d fill %v", rc, c, m, m.Fill())
		}
		if c := at(r, .5, .5); !near(c, m.Ink()) {
			t.Errorf("cell %v centre is %v, want the cross in %v", rc, c, m.Ink())
		}
	}
	// A 16:9 image keeps its aspect: the band above it is the cell's grey.
	if c := at(l.CellRect(1, 2), .5, .05); near(c, colours[2]) {
		t.Errorf("wide image was stretched to fill its square cell")
	}
}

func TestLayoutShrinksWideGrids(t *testing.T) {
	t.Parallel()
	cols := make([]string, 200)
	s := &sheet.Sheet{Columns: cols, Rows: []sheet.Row{{Label: "p"}}}
	l := s.Layout()
	if l.Cell != sheet.MinCell {
		t.Errorf("cell = %d for 200 columns, want the minimum %d", l.Cell, sheet.MinCell)
	}
	s.Columns = cols[:40]
	l = s.Layout()
	if l.Cell >= sheet.MaxCell || l.Cell < sheet.MinCell || l.Size.X > sheet.MaxWidth {
		t.Errorf("40 columns: cell %d, width %d; want a smaller cell and width <= %d", l.Cell, l.Size.X, sheet.MaxWidth)
	}
}

func TestRenderRejectsRaggedGrid(t *testing.T) {
	t.Parallel()
	s := &sheet.Sheet{Title: "x", Columns: []string{"a", "b"}, Rows: []sheet.Row{{Label: "p"}}, Cells: [][]sheet.Cell{{{}}}}
	if _, err := sheet.Render(s); err == nil {
		t.Error("Render with 1 cell for 2 columns: got nil error")
	}
}

func TestRenderOpensCellsLazily(t *testing.T) {
	t.Parallel()
	opened := 0
	ok := func() (image.Image, error) { opened++; return solid(64, 64, color.RGBA{10, 20, 200, 255}), nil }
	bad := func() (image.Image, error) { opened++; return nil, errors.New("gone") }
	s := &sheet.Sheet{Title: "x", Columns: []string{"a", "b"}, Rows: []sheet.Row{{Label: "p"}},
		Cells: [][]sheet.Cell{{{Open: ok}, {Open: bad}}}}
	img, err := sheet.Render(s)
	if err != nil {
		t.Fatal(err)
	}
	l := s.Layout()
	if opened != 2 {
		t.Errorf("opened %d images, want 2", opened)
	}
	c0, c1 := l.CellRect(0, 0), l.CellRect(0, 1)
	if c := img.At(c0.Min.X+c0.Dx()/2, c0.Min.Y+c0.Dy()/2); !near(c, color.RGBA{10, 20, 200, 255}) {
		t.Errorf("opened cell shows %v", c)
	}
	if c := img.At(c1.Min.X+c1.Dx()/2, c1.Min.Y+c1.Dy()/2); !near(c, sheet.MarkMissing.Ink()) {
		t.Errorf("unreadable cell shows %v, want the missing mark", c)
	}
}

func TestLayoutTallGrids(t *testing.T) {
	t.Parallel()
	s := &sheet.Sheet{Columns: []string{"a"}, Rows: make([]sheet.Row, sheet.MaxRows)}
	l := s.Layout()
	if l.Size.Y > sheet.MaxHeight {
		t.Errorf("%d rows make a sheet %d px tall, over %d", sheet.MaxRows, l.Size.Y, sheet.MaxHeight)
	}
	s.Rows = make([]sheet.Row, sheet.MaxRows+1)
	s.Cells = make([][]sheet.Cell, len(s.Rows))
	for i := range s.Cells {
		s.Cells[i] = make([]sheet.Cell, 1)
	}
	if _, err := sheet.Render(s); err == nil {
		t.Errorf("Render with %d rows: got nil error", len(s.Rows))
	}
}
