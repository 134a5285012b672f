package sheet

import (
	"fmt"
	"image"
	"image/color"
	"strings"

	"golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// faces are the typefaces of one rendering.
type faces struct {
	title, bold, regular font.Face
}

func newFaces() (*faces, error) {
	reg, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return nil, fmt.Errorf("parse Go Regular: %w", err)
	}
	bold, err := opentype.Parse(gobold.TTF)
	if err != nil {
		return nil, fmt.Errorf("parse Go Bold: %w", err)
	}
	face := func(f *opentype.Font, size float64) (font.Face, error) {
		return opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull})
	}
	var fs faces
	if fs.title, err = face(bold, 24); err != nil {
		return nil, err
	}
	if fs.bold, err = face(bold, 14); err != nil {
		return nil, err
	}
	if fs.regular, err = face(reg, 13); err != nil {
		return nil, err
	}
	return &fs, nil
}

// Render draws s: the title, the reference image, the column labels, and
// one row per prompt with its label and text followed by a cell per column.
// Images are fitted into their cells with their aspect ratio kept. Every
// pixel of the image is opaque.
func Render(s *Sheet) (*image.RGBA, error) {
	return render(s, func(r image.Rectangle) *image.RGBA { return image.NewRGBA(r) })
}

// render is Render on a canvas from newCanvas, whose pixels it overwrites
// all.
func render(s *Sheet, newCanvas func(image.Rectangle) *image.RGBA) (*image.RGBA, error) {
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("render sheet %s: %w", s.Title, err)
	}
	fs, err := newFaces()
	if err != nil {
		return nil, fmt.Errorf("render sheet %s: %w", s.Title, err)
	}
	l := s.Layout()
	sc := scalers{}
	img := newCanvas(image.Rectangle{Max: l.Size})
	fill(img, img.Bounds(), background())

	// Title and reference.
	text(img, fs.title, textInk(), margin, margin+28, s.Title)
	if s.Subtitle != "" {
		x := margin + font.MeasureString(fs.title, s.Title).Ceil() + 14
		text(img, fs.regular, mutedInk(), x, margin+28, fit(fs.regular, s.Subtitle, l.Size.X-x-margin))
	}
	ref := l.Reference
	fill(img, ref.Inset(-3), accent())
	if s.Reference != nil {
		sc.fit(img, ref, s.Reference)
	} else {
		cross(img, ref, MarkMissing, "no reference", fs.regular)
	}
	text(img, fs.bold, textInk(), ref.Max.X+16, ref.Min.Y+18, "reference")
	if s.Note != "" {
		text(img, fs.regular, mutedInk(), ref.Max.X+16, ref.Min.Y+40, fit(fs.regular, s.Note, l.Size.X-ref.Max.X-16-margin))
	}

	// Column labels.
	for c, label := range s.Columns {
		r := l.CellRect(0, c)
		text(img, fs.bold, textInk(), r.Min.X, l.Grid.Y-gap-8, fit(fs.bold, label, l.Cell))
	}
	// Rows.
	for ri, row := range s.Rows {
		r0 := l.CellRect(ri, 0)
		x := margin
		text(img, fs.bold, textInk(), x, r0.Min.Y+16, fit(fs.bold, row.Label, labelW-16))
		maxLines := max((l.Cell-28)/16, 1)
		for i, line := range wrap(fs.regular, row.Text, labelW-16, maxLines) {
			text(img, fs.regular, mutedInk(), x, r0.Min.Y+36+16*i, line)
		}
		for ci, cell := range s.Cells[ri] {
			r := l.CellRect(ri, ci)
			if cell.Image == nil && cell.Open != nil {
				im, err := cell.Open()
				if err != nil {
					cross(img, r, MarkMissing, "unreadable image", fs.regular)
					continue
				}
				cell.Image = im
			}
			if cell.Image != nil {
				sc.fit(img, r, cell.Image)
				continue
			}
			m := cell.Mark
			if m == MarkNone {
				m = MarkMissing
			}
			cross(img, r, m, cell.Label, fs.regular)
		}
	}
	return img, nil
}

func fill(dst *image.RGBA, r image.Rectangle, c color.RGBA) {
	draw.Draw(dst, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// scalers keeps one bilinear scaler per pair of sizes: a scaler holds a
// scratch buffer, and cells of one sheet share a few sizes, so a sheet of
// 880 cells allocates a few buffers instead of 880.
type scalers map[[4]int]draw.Scaler

// fit scales src into r, centred, keeping its aspect ratio, on the cell
// background where it does not cover r.
func (sc scalers) fit(dst *image.RGBA, r image.Rectangle, src image.Image) {
	sb := src.Bounds()
	if sb.Empty() {
		fill(dst, r, cellBG())
		return
	}
	w, h := r.Dx(), r.Dy()
	if sb.Dx()*h > sb.Dy()*w { // wider than the box
		h = max(1, sb.Dy()*w/sb.Dx())
	} else {
		w = max(1, sb.Dx()*h/sb.Dy())
	}
	x := r.Min.X + (r.Dx()-w)/2
	y := r.Min.Y + (r.Dy()-h)/2
	box := image.Rect(x, y, x+w, y+h)
	rgba, ok := upscalable(src, w, h)
	if !ok || box != r {
		// What the image leaves uncovered, or shows through it.
		fill(dst, r, cellBG())
	}
	if ok {
		upscale(dst, box, rgba)
		return
	}
	k := [4]int{w, h, sb.Dx(), sb.Dy()}
	s, ok := sc[k]
	if !ok {
		s = draw.BiLinear.NewScaler(w, h, sb.Dx(), sb.Dy())
		sc[k] = s
	}
	s.Scale(dst, box, src, sb, draw.Over, nil)
}

// cross draws a marked cell: its fill, a thick X from near corner to near
// corner, and the label at the bottom.
func cross(dst *image.RGBA, r image.Rectangle, m Mark, label string, face font.Face) {
	fill(dst, r, m.Fill())
	ink := m.Ink()
	inset := r.Dx() / 5
	n := r.Dx() - 2*inset
	th := max(2, r.Dx()/48)
	for t := 0; t <= n; t++ {
		for _, x := range []int{r.Min.X + inset + t, r.Max.X - inset - t} {
			fill(dst, image.Rect(x-th, r.Min.Y+inset+t-th, x+th, r.Min.Y+inset+t+th), ink)
		}
	}
	if label != "" {
		label = fit(face, label, r.Dx()-12)
		w := font.MeasureString(face, label).Ceil()
		text(dst, face, ink, r.Min.X+(r.Dx()-w)/2, r.Max.Y-8, label)
	}
}

func text(dst *image.RGBA, face font.Face, c color.RGBA, x, y int, s string) {
	d := font.Drawer{Dst: dst, Src: image.NewUniform(c), Face: face, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// fit cuts s to at most width pixels, ending it with an ellipsis if cut.
func fit(face font.Face, s string, width int) string {
	if font.MeasureString(face, s).Ceil() <= width {
		return s
	}
	rs := []rune(s)
	for len(rs) > 0 {
		rs = rs[:len(rs)-1]
		if t := strings.TrimRight(string(rs), " ") + "…"; font.MeasureString(face, t).Ceil() <= width {
			return t
		}
	}
	return ""
}

// wrap breaks s into at most maxLines lines of at most width pixels, the
// last one ellipsised if the text goes on.
func wrap(face font.Face, s string, width, maxLines int) []string {
	var lines []string
	line := ""
	words := strings.Fields(s)
	for i, w := range words {
		try := w
		if line != "" {
			try = line + " " + w
		}
		if font.MeasureString(face, try).Ceil() <= width || line == "" {
			line = try
			continue
		}
		lines = append(lines, fit(face, line, width))
		if len(lines) == maxLines {
			last := lines[len(lines)-1]
			lines[len(lines)-1] = fit(face, last+" "+strings.Join(words[i:], " "), width)
			return lines
		}
		line = w
	}
	if line != "" {
		lines = append(lines, fit(face, line, width))
	}
	return lines
}
