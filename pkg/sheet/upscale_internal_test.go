package sheet

import (
	"image"
	"image/color"
	"testing"

	"golang.org/x/image/draw"
)

// TestUpscaleMatchesBiLinear compares upscale with x/image/draw's BiLinear
// on enlargements of a noisy image, square and not, pixel by pixel.
func TestUpscaleMatchesBiLinear(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ sw, sh, w, h int }{
		{64, 64, 151, 151}, {64, 64, 64, 64}, {1, 1, 9, 9}, {40, 64, 97, 151}, {64, 40, 151, 95}, {3, 5, 256, 200},
	} {
		src := image.NewRGBA(image.Rect(0, 0, c.sw, c.sh))
		draw.Draw(src, src.Bounds(), noisy(c.sw, c.sh, c.sw*c.h), image.Point{}, draw.Src)
		rgba, ok := upscalable(src, c.w, c.h)
		if !ok {
			t.Fatalf("%dx%d into %dx%d: not upscalable", c.sw, c.sh, c.w, c.h)
		}
		r := image.Rect(5, 7, 5+c.w, 7+c.h)
		got := image.NewRGBA(image.Rect(0, 0, c.w+10, c.h+14))
		want := image.NewRGBA(got.Bounds())
		upscale(got, r, rgba)
		draw.BiLinear.Scale(want, r, src, src.Bounds(), draw.Src, nil)
		worst := 0
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				g, w := got.RGBAAt(x, y), want.RGBAAt(x, y)
				for _, d := range []int{int(g.R) - int(w.R), int(g.G) - int(w.G), int(g.B) - int(w.B), int(g.A) - int(w.A)} {
					worst = max(worst, d, -d)
				}
			}
		}
		if worst > 2 {
			t.Errorf("%dx%d into %dx%d: a channel differs from BiLinear's by %d levels; want at most 2", c.sw, c.sh, c.w, c.h, worst)
		}
		// Nothing outside r is drawn.
		if p := got.RGBAAt(r.Min.X-1, r.Min.Y); p != (color.RGBA{}) {
			t.Errorf("%dx%d into %dx%d: pixel left of the box drawn: %v", c.sw, c.sh, c.w, c.h, p)
		}
		if p := got.RGBAAt(r.Min.X, r.Max.Y); p != (color.RGBA{}) {
			t.Errorf("%dx%d into %dx%d: pixel below the box drawn: %v", c.sw, c.sh, c.w, c.h, p)
		}
	}
}

// TestUpscalableLeavesTheRestToDraw: transparent images, other types and
// reductions are drawn by x/image/draw.
func TestUpscalableLeavesTheRestToDraw(t *testing.T) {
	t.Parallel()
	opaque := image.NewRGBA(image.Rect(0, 0, 64, 64))
	draw.Draw(opaque, opaque.Bounds(), image.NewUniform(color.RGBA{1, 2, 3, 255}), image.Point{}, draw.Src)
	clear := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for _, c := range []struct {
		name string
		src  image.Image
		w, h int
		want bool
	}{
		{"opaque RGBA enlarged", opaque, 151, 151, true},
		{"opaque RGBA reduced", opaque, 32, 32, false},
		{"opaque RGBA taller only", opaque, 151, 40, false},
		{"transparent RGBA", clear, 151, 151, false},
		{"opaque NRGBA", noisy(64, 64, 1), 151, 151, true},
		{"transparent NRGBA", image.NewNRGBA(image.Rect(0, 0, 64, 64)), 151, 151, false},
		{"YCbCr", image.NewYCbCr(image.Rect(0, 0, 64, 64), image.YCbCrSubsampleRatio420), 151, 151, false},
	} {
		if _, ok := upscalable(c.src, c.w, c.h); ok != c.want {
			t.Errorf("%s into %dx%d: upscalable %v; want %v", c.name, c.w, c.h, ok, c.want)
		}
	}
}

func BenchmarkCellScale(b *testing.B) {
	src := image.NewRGBA(image.Rect(0, 0, 64, 64))
	draw.Draw(src, src.Bounds(), noisy(64, 64, 3), image.Point{}, draw.Src)
	dst := image.NewRGBA(image.Rect(0, 0, 900, 200))
	r := image.Rect(10, 10, 161, 161)
	b.Run("bilinear", func(b *testing.B) {
		s := draw.BiLinear.NewScaler(r.Dx(), r.Dy(), 64, 64)
		for b.Loop() {
			s.Scale(dst, r, src, src.Bounds(), draw.Over, nil)
		}
	})
	b.Run("upscale", func(b *testing.B) {
		for b.Loop() {
			upscale(dst, r, src)
		}
	})
}
