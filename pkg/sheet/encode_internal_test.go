package sheet

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"testing"
)

// scaleSheet is the sheet of one character of the scale benchmark: 100
// prompts × 4 models of 64 px outputs, a 900 × 16,100 image.
func scaleSheet() *Sheet { return gridSheet(100, 4) }

// gridSheet is a sheet of rows prompts × cols models of 64 px outputs.
func gridSheet(rows, cols int) *Sheet {
	s := &Sheet{Title: "c0", Subtitle: "run bench", Reference: noisy(256, 256, 1)}
	for m := range cols {
		s.Columns = append(s.Columns, fmt.Sprintf("model-%d", m))
	}
	for p := range rows {
		s.Rows = append(s.Rows, Row{Label: fmt.Sprintf("p%03d", p), Text: "the person is playing the piano in a sunlit living room"})
		row := make([]Cell, cols)
		for m := range row {
			row[m] = Cell{Image: noisy(64, 64, p*cols+m)}
		}
		s.Cells = append(s.Cells, row)
	}
	return s
}

// noisy is a w × h image with gradients and noise, as a photo-like output.
func noisy(w, h, seed int) image.Image {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	x := uint32(seed*2654435761 + 1)
	for y := range h {
		for i := range w {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			img.SetNRGBA(i, y, color.NRGBA{uint8(i * 255 / w), uint8(y * 255 / h), uint8(x & 0x3f), 255})
		}
	}
	return img
}

// TestEncodeRGBDecodesToTheSameImage checks encodeRGB's output pixel by
// pixel against the image (a sheet of 6 prompts: about 2,000 pixels tall,
// so several IDAT chunks).
func TestEncodeRGBDecodesToTheSameImage(t *testing.T) {
	t.Parallel()
	img, err := Render(gridSheet(6, 2))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := encodeRGB(&buf, img); err != nil {
		t.Fatal(err)
	}
	got, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	rgba, ok := got.(*image.RGBA)
	if !ok || rgba.Bounds() != img.Bounds() {
		t.Fatalf("decoded a %T of %v; want an RGB image of %v", got, got.Bounds(), img.Bounds())
	}
	for i := range img.Pix {
		if rgba.Pix[i] != img.Pix[i] {
			t.Fatalf("pixel (%d, %d) is %v; want %v", i%img.Stride/4, i/img.Stride, rgba.At(i%img.Stride/4, i/img.Stride), img.At(i%img.Stride/4, i/img.Stride))
		}
	}
}

func BenchmarkScaleSheet(b *testing.B) {
	s := scaleSheet()
	img, err := Render(s)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("render", func(b *testing.B) {
		for b.Loop() {
			if _, err := Render(s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		enc := png.Encoder{CompressionLevel: png.BestSpeed}
		var n int
		for b.Loop() {
			var buf bytes.Buffer
			_ = enc.Encode(&buf, img)
			n = buf.Len()
		}
		b.ReportMetric(float64(n), "bytes")
	})
	b.Run("rgb", func(b *testing.B) {
		var n int
		for b.Loop() {
			var buf bytes.Buffer
			_ = encodeRGB(&buf, img)
			n = buf.Len()
		}
		b.ReportMetric(float64(n), "bytes")
	})
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			_ = Encode(io.Discard, s)
		}
	})
}
