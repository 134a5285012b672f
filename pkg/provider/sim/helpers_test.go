package sim

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/png"
	"math"
	"testing"
	"time"
)

// portrait draws a w×h stand-in for a character reference: a face with
// hair, eyes and mouth over shoulders and a gradient background. It has the
// features the treatments react to (skin tones, dark hair, strong edges).
func portrait(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	fw, fh := float64(w), float64(h)
	// in reports whether (x, y) is inside the ellipse centred on (cx, cy)
	// with radii (rx, ry), all as fractions of the frame, and how deep (0 at
	// the rim, 1 at the centre).
	in := func(x, y, cx, cy, rx, ry float64) (bool, float64) {
		dx, dy := (x/fw-cx)/rx, (y/fh-cy)/ry
		d := dx*dx + dy*dy
		return d <= 1, 1 - d
	}
	for y := range h {
		for x := range w {
			fx, fy := float64(x), float64(y)
			// Background: teal to slate, with soft diagonal texture.
			t := fy / fh
			tex := 10 * math.Sin(fx/17+fy/23)
			c := [3]float64{60 + 40*t + tex, 120 - 30*t + tex, 130 - 20*t}
			if ok, _ := in(fx, fy, 0.5, 1.05, 0.48, 0.3); ok { // shoulders
				c = [3]float64{150, 40, 50}
			}
			if fx > fw*0.42 && fx < fw*0.58 && fy > fh*0.55 && fy < fh*0.8 { // neck
				c = [3]float64{190, 140, 110}
			}
			if ok, _ := in(fx, fy, 0.5, 0.36, 0.27, 0.25); ok { // hair
				c = [3]float64{60, 38, 25}
			}
			if ok, depth := in(fx, fy, 0.5, 0.44, 0.21, 0.2); ok && fy > fh*0.26 { // face
				shade := 0.8 + 0.2*math.Sqrt(depth)
				c = [3]float64{230 * shade, 178 * shade, 145 * shade}
			}
			for _, ex := range []float64{0.42, 0.58} { // eyes
				if ok, _ := in(fx, fy, ex, 0.42, 0.045, 0.022); ok {
					c = [3]float64{245, 245, 240}
				}
				if ok, _ := in(fx, fy, ex, 0.42, 0.018, 0.018); ok {
					c = [3]float64{50, 80, 40}
				}
				if ok, _ := in(fx, fy, ex, 0.385, 0.05, 0.008); ok { // brows
					c = [3]float64{55, 35, 25}
				}
			}
			if ok, _ := in(fx, fy, 0.5, 0.54, 0.07, 0.018); ok { // mouth
				c = [3]float64{170, 60, 70}
			}
			if ok, _ := in(fx, fy, 0.5, 0.49, 0.015, 0.035); ok { // nose shadow
				c = [3]float64{c[0] * 0.85, c[1] * 0.85, c[2] * 0.85}
			}
			img.SetNRGBA(x, y, color.NRGBA{u8(c[0]), u8(c[1]), u8(c[2]), 255})
		}
	}
	return img
}

func u8(f float64) uint8 { return uint8(math.Max(0, math.Min(255, math.Round(f)))) }

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// instant is a Config.Sleep that records the requested latency and returns
// at once unless ctx is already done.
func instant(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// setup returns a Client that does not sleep and a reference PNG.
func setup(t testing.TB) (*Client, []byte) {
	t.Helper()
	c, err := New(Config{Sleep: instant})
	if err != nil {
		t.Fatal(err)
	}
	return c, encodePNG(t, portrait(300, 400))
}

// meanDiff is the mean absolute difference per channel, 0..255, of two
// images of the same size.
func meanDiff(t testing.TB, a, b image.Image) float64 {
	t.Helper()
	if a.Bounds() != b.Bounds() {
		t.Fatalf("sizes differ: %v vs %v", a.Bounds(), b.Bounds())
	}
	var sum, n float64
	r := a.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			ar, ag, ab, _ := a.At(x, y).RGBA()
			br, bg, bb, _ := b.At(x, y).RGBA()
			sum += math.Abs(float64(ar)-float64(br)) + math.Abs(float64(ag)-float64(bg)) + math.Abs(float64(ab)-float64(bb))
			n += 3
		}
	}
	return sum / n / 257
}
