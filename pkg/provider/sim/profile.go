package sim

import (
	"image"
	"math/rand/v2"
)

// treatment returns the look of a profile: an in-place edit of the fitted
// reference. Treatments are integer arithmetic over the pixel buffer, which
// keeps them fast and deterministic.
func treatment(profile string) (func(img *image.RGBA, seed int64), bool) {
	switch profile {
	case "kontext":
		return kontext, true
	case "ideogram":
		return ideogram, true
	case "seededit":
		return seededit, true
	case "gpt-image":
		return gptImage, true
	case "flaky":
		return flaky, true
	}
	return nil, false
}

// kontext is warm and painterly: softened, partly posterized, warm-toned,
// with a vignette.
func kontext(img *image.RGBA, _ int64) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	soft := blur(img, max(1, max(w, h)/256))
	pix, sp := img.Pix, soft.Pix
	cx, cy := w/2, h/2
	for y := range h {
		dy := (y - cy) * 1024 / max(1, cy)
		for x := range w {
			dx := (x - cx) * 1024 / max(1, cx)
			d2 := (dx*dx + dy*dy) >> 10 // 0 at the centre, 1024 at the edge midpoints
			vig := 256 - min(d2, 2048)*40/1024
			i := y*img.Stride + x*4
			for c := range 3 {
				v := (int(pix[i+c]) + 2*int(sp[i+c])) / 3
				q := v * 6 / 256 * 51 // six levels, 0..255
				v = (2*v + 3*q) / 5
				pix[i+c] = uint8(v)
			}
			r := int(pix[i])*112/100 + 12
			g := int(pix[i+1])*102/100 + 4
			b := int(pix[i+2]) * 80 / 100
			pix[i] = clamp(r * vig / 256)
			pix[i+1] = clamp(g * vig / 256)
			pix[i+2] = clamp(b * vig / 256)
		}
	}
}

// ideogram is a flat poster: four tones chosen by luminance quartile,
// ink outlines on strong edges, and a bold ink border.
func ideogram(img *image.RGBA, _ int64) {
	// The palette runs from dark to light: ink, brick, sand, cream.
	palette := [4][3]uint8{{0x1b, 0x2a, 0x41}, {0xc8, 0x55, 0x3d}, {0xf2, 0xb8, 0x7a}, {0xf8, 0xf1, 0xdc}}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	long := max(w, h)
	pix := img.Pix
	l := luma(blur(img, max(1, long/160)))
	var hist [256]int
	for _, v := range l {
		hist[v]++
	}
	// Thresholds at the 30th, 55th and 80th luminance percentiles, so dark
	// and bright references alike use the whole palette.
	var cuts [3]uint8
	targets := [3]int{len(l) * 30 / 100, len(l) * 55 / 100, len(l) * 80 / 100}
	sum, k := 0, 0
	for v := range 256 {
		sum += hist[v]
		for k < 3 && sum > targets[k] {
			cuts[k] = uint8(v)
			k++
		}
	}
	edges := sobel(l, w, h)
	ink := palette[0]
	border := max(3, long/40)
	for y := range h {
		for x := range w {
			j := y*w + x
			i := y*img.Stride + x*4
			var c [3]uint8
			switch {
			case x < border || y < border || x >= w-border || y >= h-border || edges[j] > 70:
				c = ink
			case l[j] <= cuts[0]:
				c = palette[0]
			case l[j] <= cuts[1]:
				c = palette[1]
			case l[j] <= cuts[2]:
				c = palette[2]
			default:
				c = palette[3]
			}
			pix[i], pix[i+1], pix[i+2] = c[0], c[1], c[2]
		}
	}
}

// seededit is a cool pencil sketch: dark strokes on the edges over a pale,
// cool-tinted, desaturated copy of the reference.
func seededit(img *image.RGBA, _ int64) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	l := luma(img)
	edges := sobel(luma(blur(img, 1)), w, h)
	pix := img.Pix
	for y := range h {
		for x := range w {
			j := y*w + x
			i := y*img.Stride + x*4
			grey := int(l[j])
			// 40% saturation, then a cool tint, then lifted towards paper.
			r := (grey*6 + int(pix[i])*4) / 10
			g := (grey*6 + int(pix[i+1])*4) / 10
			b := (grey*6 + int(pix[i+2])*4) / 10
			r, g, b = r*82/100, g*96/100+6, b*104/100+24
			r, g, b = 110+r*57/100, 110+g*57/100, 110+b*57/100
			stroke := 255 - min(255, int(edges[j])*2)
			pix[i] = clamp(r * stroke / 255)
			pix[i+1] = clamp(g * stroke / 255)
			pix[i+2] = clamp(b * stroke / 255)
		}
	}
}

// gptImage is soft and high-key: a glow of the blurred image, slightly
// desaturated, with the shadows lifted.
func gptImage(img *image.RGBA, _ int64) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	soft := blur(img, max(2, max(w, h)/128))
	pix, sp := img.Pix, soft.Pix
	for i := 0; i < len(pix); i += 4 {
		var v [3]int
		for c := range 3 {
			v[c] = (2*int(pix[i+c]) + 3*int(sp[i+c])) / 5
		}
		grey := (299*v[0] + 587*v[1] + 114*v[2]) / 1000
		for c := range 3 {
			x := (v[c]*80 + grey*20) / 100
			x = 255 - (255-x)*(255-x)/255 // screen with itself: high key
			pix[i+c] = clamp(x)
		}
		pix[i+2] = clamp(int(pix[i+2]) - 6) // a touch warm, like daylight film
	}
}

// flaky is visibly degraded: heavy noise, scanlines and a colour fringe.
func flaky(img *image.RGBA, seed int64) {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	src := make([]uint8, len(img.Pix))
	copy(src, img.Pix)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x666c616b79)) // "flaky"
	shift := max(1, w/170)
	pix := img.Pix
	for y := range h {
		scan := 256
		if y%4 == 0 {
			scan = 200
		}
		for x := range w {
			i := y*img.Stride + x*4
			red := src[y*img.Stride+max(0, x-shift)*4] // fringe: red shifted right
			n := rng.IntN(97) - 48
			pix[i] = clamp((int(red) + n + rng.IntN(25) - 12) * scan / 256)
			pix[i+1] = clamp((int(src[i+1]) + n + rng.IntN(25) - 12) * scan / 256)
			pix[i+2] = clamp((int(src[i+2]) + n + rng.IntN(25) - 12) * scan / 256)
		}
	}
}

// luma returns the Rec. 601 luminance of every pixel, row-major.
func luma(img *image.RGBA) []uint8 {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	out := make([]uint8, w*h)
	for y := range h {
		row := img.Pix[y*img.Stride:]
		for x := range w {
			p := row[x*4:]
			out[y*w+x] = uint8((299*int(p[0]) + 587*int(p[1]) + 114*int(p[2])) / 1000)
		}
	}
	return out
}

// sobel returns the edge strength of a w×h luminance plane, 0..255.
func sobel(l []uint8, w, h int) []uint8 {
	out := make([]uint8, w*h)
	for y := 1; y < h-1; y++ {
		for x := 1; x < w-1; x++ {
			p := func(dx, dy int) int { return int(l[(y+dy)*w+x+dx]) }
			gx := p(1, -1) + 2*p(1, 0) + p(1, 1) - p(-1, -1) - 2*p(-1, 0) - p(-1, 1)
			gy := p(-1, 1) + 2*p(0, 1) + p(1, 1) - p(-1, -1) - 2*p(0, -1) - p(1, -1)
			out[y*w+x] = clamp((abs(gx) + abs(gy)) / 4)
		}
	}
	return out
}

// blur returns a box blur of img with radius r (a (2r+1)² window), edges
// clamped. It runs in time independent of r.
func blur(img *image.RGBA, r int) *image.RGBA {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	tmp := image.NewRGBA(image.Rect(0, 0, w, h))
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	n := 2*r + 1
	// Horizontal pass into tmp: a running sum along each row.
	for y := range h {
		src := img.Pix[y*img.Stride:]
		dst := tmp.Pix[y*tmp.Stride:]
		for c := range 3 {
			sum := 0
			for k := -r; k <= r; k++ {
				sum += int(src[clampi(k, 0, w-1)*4+c])
			}
			for x := range w {
				dst[x*4+c] = uint8(sum / n)
				sum += int(src[clampi(x+r+1, 0, w-1)*4+c]) - int(src[clampi(x-r, 0, w-1)*4+c])
			}
		}
	}
	// Vertical pass into out: running sums of every column, row by row.
	sums := make([]int, w*4)
	row := func(y int) []uint8 { return tmp.Pix[clampi(y, 0, h-1)*tmp.Stride:][:w*4] }
	for k := -r; k <= r; k++ {
		for i, v := range row(k) {
			sums[i] += int(v)
		}
	}
	for y := range h {
		dst := out.Pix[y*out.Stride:][:w*4]
		for i := range dst {
			dst[i] = uint8(sums[i] / n)
		}
		add, sub := row(y+r+1), row(y-r)
		for i := range sums {
			sums[i] += int(add[i]) - int(sub[i])
		}
	}
	for i := 3; i < len(out.Pix); i += 4 {
		out.Pix[i] = 0xff
	}
	return out
}

func clamp(v int) uint8 {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return uint8(v)
}

func clampi(v, lo, hi int) int { return min(max(v, lo), hi) }

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
