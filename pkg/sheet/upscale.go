package sheet

import (
	"encoding/binary"
	"image"
)

// A sheet of 100 prompts and 4 models enlarges 400 small images (the
// 64-pixel outputs of a big run, or outputs that are their own thumbnails)
// to 151-pixel cells. x/image/draw's BiLinear does it in floating point at
// about 16 ns an output pixel: 0.15 s a sheet, most of a big run's fan-in.
// upscale computes the same bilinear interpolation in 8-bit fixed point
// for the common case, an opaque RGBA or NRGBA image made larger, at about a tenth
// of the cost; every other image (smaller cells, JPEG thumbnails,
// transparency) goes to x/image/draw.

// upscalable reports whether upscale can draw src into a w × h box: src
// is an opaque *image.RGBA or *image.NRGBA (whose bytes are the same when
// every pixel is opaque) no larger than the box on either side. It returns
// src's pixels as an *image.RGBA.
func upscalable(src image.Image, w, h int) (*image.RGBA, bool) {
	var rgba *image.RGBA
	switch im := src.(type) {
	case *image.RGBA:
		rgba = im
	case *image.NRGBA:
		rgba = &image.RGBA{Pix: im.Pix, Stride: im.Stride, Rect: im.Rect}
	default:
		return nil, false
	}
	b := rgba.Bounds()
	if b.Dx() > w || b.Dy() > h || !src.(interface{ Opaque() bool }).Opaque() {
		return nil, false
	}
	return rgba, true
}

// taps are, for each destination column (or row), the two source columns
// it lies between and the weight of the second, in 1/256ths.
type taps struct {
	lo, hi []int
	w      []uint32
}

// newTaps maps n destination pixels onto m source pixels as x/image/draw's
// bilinear scaler does: destination pixel centres are mapped to source
// coordinates, and a centre outside the source's outer pixel centres takes
// the outer pixel.
func newTaps(n, m int) taps {
	t := taps{lo: make([]int, n), hi: make([]int, n), w: make([]uint32, n)}
	for i := range n {
		// The source coordinate of the centre of destination pixel i, in
		// 1/256ths of a source pixel, relative to source pixel 0's centre.
		c := ((2*i+1)*m*256)/(2*n) - 128
		switch {
		case c <= 0:
			t.lo[i], t.hi[i] = 0, 0
		case c >= (m-1)*256:
			t.lo[i], t.hi[i] = m-1, m-1
		default:
			t.lo[i], t.hi[i], t.w[i] = c>>8, c>>8+1, uint32(c&0xff)
		}
	}
	return t
}

// upscale draws the opaque src enlarged into r of dst by bilinear
// interpolation: each source row it needs is widened once into a scratch
// row, and each destination row is the weighted mean of two widened rows.
// The alpha of every pixel it writes is opaque. Pixels are mixed a word
// at a time: the red and blue bytes of a pixel in one word, green and
// alpha in another, each in its own 16-bit lane (255 × 256 < 65,536).
func upscale(dst *image.RGBA, r image.Rectangle, src *image.RGBA) {
	r = r.Intersect(dst.Bounds())
	w, h := r.Dx(), r.Dy()
	sb := src.Bounds()
	if w <= 0 || h <= 0 || sb.Empty() {
		return
	}
	xs, ys := newTaps(w, sb.Dx()), newTaps(h, sb.Dy())
	// wide holds widened source rows, 4 bytes a pixel, computed on first
	// use: an enlargement uses every source row for several output rows.
	wide := make([][]byte, sb.Dy())
	scratch := make([]byte, 4*w*sb.Dy())
	widen := func(sy int) []byte {
		if row := wide[sy]; row != nil {
			return row
		}
		off := src.PixOffset(sb.Min.X, sb.Min.Y+sy)
		s := src.Pix[off : off+4*sb.Dx()]
		row := scratch[4*w*sy : 4*w*(sy+1)]
		for x := range w {
			a := binary.LittleEndian.Uint32(s[4*xs.lo[x]:])
			b := binary.LittleEndian.Uint32(s[4*xs.hi[x]:])
			binary.LittleEndian.PutUint32(row[4*x:], mix32(a, b, xs.w[x])|0xff000000)
		}
		wide[sy] = row
		return row
	}
	for y := range h {
		top, bottom, f := widen(ys.lo[y]), widen(ys.hi[y]), ys.w[y]
		off := dst.PixOffset(r.Min.X, r.Min.Y+y)
		d := dst.Pix[off : off+4*w : off+4*w]
		if f == 0 {
			copy(d, top)
			continue
		}
		i := 0
		for ; i+8 <= len(d); i += 8 {
			a := binary.LittleEndian.Uint64(top[i:])
			b := binary.LittleEndian.Uint64(bottom[i:])
			binary.LittleEndian.PutUint64(d[i:], mix64(a, b, f))
		}
		if i < len(d) {
			a := binary.LittleEndian.Uint32(top[i:])
			b := binary.LittleEndian.Uint32(bottom[i:])
			binary.LittleEndian.PutUint32(d[i:], mix32(a, b, f))
		}
	}
}

// mix32 is (a×(256−f) + b×f) / 256, rounded, byte by byte, for f in
// [0, 256).
func mix32(a, b, f uint32) uint32 {
	const lanes, round = 0x00ff00ff, 0x00800080
	g := 256 - f
	even := ((a&lanes)*g + (b&lanes)*f + round) >> 8 & lanes
	odd := ((a>>8&lanes)*g + (b>>8&lanes)*f + round) &^ lanes
	return even | odd
}

// mix64 is mix32 on two pixels at once.
func mix64(a, b uint64, f uint32) uint64 {
	const lanes, round = 0x00ff00ff00ff00ff, 0x0080008000800080
	f64 := uint64(f)
	g := 256 - f64
	even := ((a&lanes)*g + (b&lanes)*f64 + round) >> 8 & lanes
	odd := ((a>>8&lanes)*g + (b>>8&lanes)*f64 + round) & ^uint64(lanes)
	return even | odd
}
