package imagecheck

import (
	"fmt"
	"image"
	"math"
)

// DefaultMinStdDev is the NotBlank threshold used when MinStdDev is 0.
const DefaultMinStdDev = 2.0

// NotBlank fails images whose luminance barely varies: the black frames
// that moderated or crashed generations come back as, and white or
// single-colour frames. It samples a grid of at most 256×256 pixels, so its
// cost does not grow with the image.
type NotBlank struct {
	// MinStdDev is the lowest luminance standard deviation (0..255) an
	// image may have. Default (0): DefaultMinStdDev, 2.0, which a dark but
	// real photo clears easily (its deviation is usually 10 or more) while
	// a flat frame with compression noise stays well below it.
	MinStdDev float64
}

// Name implements Check.
func (NotBlank) Name() string { return "not_blank" }

// Check implements Check.
func (c NotBlank) Check(o *Output, _ Want) error {
	threshold := c.MinStdDev
	if threshold == 0 {
		threshold = DefaultMinStdDev
	}
	if o.Image == nil {
		return fmt.Errorf("no decoded image (build the Output with Decode)")
	}
	sd, mean := lumaStdDev(o.Image)
	if sd < threshold {
		return fmt.Errorf("image is blank: luminance %.1f±%.2f, want a deviation of at least %.2f", mean, sd, threshold)
	}
	return nil
}

// lumaStdDev returns the standard deviation and mean of the luminance
// (0..255) over a sample grid of img.
func lumaStdDev(img image.Image) (sd, mean float64) {
	b := img.Bounds()
	if b.Empty() {
		return 0, 0
	}
	const grid = 256
	nx, ny := min(b.Dx(), grid), min(b.Dy(), grid)
	var sum, sumSq float64
	for j := range ny {
		y := b.Min.Y + (2*j+1)*b.Dy()/(2*ny)
		for i := range nx {
			x := b.Min.X + (2*i+1)*b.Dx()/(2*nx)
			l := luma(img, x, y)
			sum += l
			sumSq += l * l
		}
	}
	n := float64(nx * ny)
	mean = sum / n
	return math.Sqrt(max(0, sumSq/n-mean*mean)), mean
}

// luma returns the Rec. 601 luminance of one pixel, 0..255, with fast
// paths for the types the standard decoders return.
func luma(img image.Image, x, y int) float64 {
	switch m := img.(type) {
	case *image.YCbCr:
		return float64(m.Y[m.YOffset(x, y)])
	case *image.Gray:
		return float64(m.Pix[m.PixOffset(x, y)])
	case *image.RGBA:
		p := m.Pix[m.PixOffset(x, y):]
		return 0.299*float64(p[0]) + 0.587*float64(p[1]) + 0.114*float64(p[2])
	case *image.NRGBA:
		p := m.Pix[m.PixOffset(x, y):]
		a := float64(p[3]) / 255 // composite over black, like a viewer's dark background
		return a * (0.299*float64(p[0]) + 0.587*float64(p[1]) + 0.114*float64(p[2]))
	}
	r, g, b, _ := img.At(x, y).RGBA() // premultiplied, 0..65535
	return (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(b)) / 257
}

// Size fails images whose width or height differs from Want's, where set.
type Size struct{}

// Name implements Check.
func (Size) Name() string { return "size" }

// Check implements Check.
func (Size) Check(o *Output, want Want) error {
	if (want.Width != 0 && o.Width != want.Width) || (want.Height != 0 && o.Height != want.Height) {
		return fmt.Errorf("image is %d×%d, want %s×%s", o.Width, o.Height, dim(want.Width), dim(want.Height))
	}
	return nil
}

func dim(n int) string {
	if n == 0 {
		return "any"
	}
	return fmt.Sprint(n)
}

// Aspect fails images whose width/height differs from Want.AspectRatio by
// more than Want.AspectTolerance (relative), where AspectRatio is set.
type Aspect struct{}

// Name implements Check.
func (Aspect) Name() string { return "aspect" }

// Check implements Check.
func (Aspect) Check(o *Output, want Want) error {
	if want.AspectRatio == 0 {
		return nil
	}
	tol := want.AspectTolerance
	if tol == 0 {
		tol = DefaultAspectTolerance
	}
	if o.Height == 0 {
		return fmt.Errorf("image has no height")
	}
	got := float64(o.Width) / float64(o.Height)
	if math.Abs(got/want.AspectRatio-1) > tol {
		return fmt.Errorf("aspect ratio is %.3f (%d×%d), want %.3f±%.0f%%", got, o.Width, o.Height, want.AspectRatio, tol*100)
	}
	return nil
}
