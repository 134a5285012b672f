package sim

import (
	"errors"
	"fmt"
	"hash/fnv"
	"image"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/likeness-run/likeness/pkg/provider"
	"golang.org/x/image/draw"
)

// DefaultSize is the long side of an output when params set no "size".
const DefaultSize = 512

// Render draws the output of one simulated generation: ref cropped and
// scaled into the frame asked for by params ("size", default DefaultSize,
// the long side in pixels; "aspect_ratio", default "1:1", or
// "match_input_image" for the reference's own aspect), given the look of
// profile (a sim model name such as "kontext"), then varied by prompt (a
// colour wash, and a band along the bottom whose colours encode the prompt)
// and by seed (framing and translucent shapes). Other params are ignored. The result is always opaque; transparent
// parts of ref are composited over white.
//
// Render is pure: the same arguments give the same pixels. It returns an
// error for a nil or empty ref, an unknown profile, or a size or aspect
// ratio the catalog does not allow.
func Render(ref image.Image, profile, prompt string, seed int64, params map[string]any) (*image.RGBA, error) {
	if ref == nil || ref.Bounds().Empty() {
		return nil, errors.New("sim: empty reference image")
	}
	treat, ok := treatment(profile)
	if !ok {
		return nil, fmt.Errorf("sim: unknown profile %q", profile)
	}
	w, h, err := frameSize(ref.Bounds(), params)
	if err != nil {
		return nil, err
	}
	return render(ref, treat, prompt, seed, w, h), nil
}

// RenderEdit draws the output of one simulated inpainting edit: Render's
// picture of the character, framed to the bounding box of the mask's
// non-black pixels, replaces img where mask is white and blends in where it
// is grey; where mask is black img is kept exactly. mask must have img's size. Params' size and aspect ratio are
// ignored: an edit keeps the frame of the image it edits.
func RenderEdit(ref, img, mask image.Image, profile, prompt string, seed int64) (*image.RGBA, error) {
	if ref == nil || ref.Bounds().Empty() || img == nil || img.Bounds().Empty() || mask == nil {
		return nil, errors.New("sim: an edit needs a reference, an image and a mask")
	}
	treat, ok := treatment(profile)
	if !ok {
		return nil, fmt.Errorf("sim: unknown profile %q", profile)
	}
	ib, mb := img.Bounds(), mask.Bounds()
	if ib.Dx() != mb.Dx() || ib.Dy() != mb.Dy() {
		return nil, fmt.Errorf("sim: the mask is %dx%d but the image is %dx%d", mb.Dx(), mb.Dy(), ib.Dx(), ib.Dy())
	}
	w, h := ib.Dx(), ib.Dy()
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range out.Pix {
		out.Pix[i] = 0xff // transparent parts of the image land on white
	}
	draw.Draw(out, out.Rect, img, ib.Min, draw.Over)
	// The mask's luminance (16-bit) is the share of the painted pixel:
	// white repaints, black keeps.
	alpha := make([]uint32, w*h)
	box := image.Rectangle{}
	for y := range h {
		for x := range w {
			r, g, b, _ := mask.At(mb.Min.X+x, mb.Min.Y+y).RGBA()
			if a := (299*r + 587*g + 114*b) / 1000; a > 0 {
				alpha[y*w+x] = a
				box = box.Union(image.Rect(x, y, x+1, y+1))
			}
		}
	}
	if box.Empty() { // an all-black mask keeps the whole image
		return out, nil
	}
	painted := render(ref, treat, prompt, seed, box.Dx(), box.Dy())
	for y := box.Min.Y; y < box.Max.Y; y++ {
		for x := box.Min.X; x < box.Max.X; x++ {
			a := alpha[y*w+x]
			if a == 0 {
				continue
			}
			i, j := out.PixOffset(x, y), painted.PixOffset(x-box.Min.X, y-box.Min.Y)
			for c := range 3 {
				o, p := uint32(out.Pix[i+c]), uint32(painted.Pix[j+c])
				out.Pix[i+c] = uint8((o*(0xffff-a) + p*a) / 0xffff)
			}
		}
	}
	return out, nil
}

// render frames ref at w×h and gives it the profile's look and the
// prompt's and seed's variation.
func render(ref image.Image, treat func(*image.RGBA, int64), prompt string, seed int64, w, h int) *image.RGBA {
	// The seed also frames the shot: a zoom of up to 10% and where the
	// zoomed crop sits, as different seeds of a real model compose
	// differently.
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6672616d65)) // "frame"
	img := fit(ref, w, h, 1000+rng.IntN(101), rng.IntN(1001), rng.IntN(601))
	treat(img, seed)
	vary(img, prompt, seed)
	return img
}

// frameSize returns the output size for a reference of bounds src.
func frameSize(src image.Rectangle, params map[string]any) (w, h int, err error) {
	// Validate against the catalog so Render and the registry agree.
	var catalog provider.Model
	for _, m := range provider.Catalog() {
		if m.Provider == ProviderName {
			catalog = m
			break
		}
	}
	for _, name := range []string{"size", "aspect_ratio"} {
		v, ok := params[name]
		if !ok {
			continue
		}
		if p, ok := catalog.Param(name); ok {
			if err := p.Check(v); err != nil {
				return 0, 0, fmt.Errorf("sim: %s: %w", name, err)
			}
		}
	}
	long := DefaultSize
	if v, ok := number(params["size"]); ok {
		long = int(v)
	}
	ratio := 1.0
	switch s, _ := params["aspect_ratio"].(string); s {
	case "", "1:1":
	case "match_input_image":
		ratio = float64(src.Dx()) / float64(src.Dy())
	default:
		ratio, err = parseRatio(s)
		if err != nil {
			return 0, 0, err
		}
	}
	if ratio >= 1 {
		return long, max(1, int(math.Round(float64(long)/ratio))), nil
	}
	return max(1, int(math.Round(float64(long)*ratio))), long, nil
}

// parseRatio parses "W:H".
func parseRatio(s string) (float64, error) {
	ws, hs, ok := strings.Cut(s, ":")
	w, err1 := strconv.ParseFloat(ws, 64)
	h, err2 := strconv.ParseFloat(hs, 64)
	if !ok || err1 != nil || err2 != nil || !(w > 0) || !(h > 0) || math.IsInf(w, 0) || math.IsInf(h, 0) {
		return 0, fmt.Errorf("sim: aspect_ratio %q is not W:H", s)
	}
	return w / h, nil
}

// fit crops ref to the frame's aspect (keeping more of the top, where a
// portrait's face is), zooms in by zoom/1000 placing the zoomed crop at
// fx/1000 across and fy/1000 down the room left, and scales the result into
// a new w×h opaque image.
//
// x/image/draw's CatmullRom kernel allocates a float64 buffer of the
// destination width times the source height (16 MB for a 1024² reference),
// so fit shrinks large crops by whole-pixel box averaging first and then
// interpolates bilinearly from at most twice the frame size: a few
// milliseconds with little aliasing.
func fit(ref image.Image, w, h, zoom, fx, fy int) *image.RGBA {
	sb := ref.Bounds()
	sw, sh := sb.Dx(), sb.Dy()
	crop := sb
	switch {
	case sw*h > sh*w: // reference is wider: trim the sides evenly
		cw := max(1, (sh*w+h/2)/h)
		x0 := sb.Min.X + (sw-cw)/2
		crop = image.Rect(x0, sb.Min.Y, x0+cw, sb.Max.Y)
	case sw*h < sh*w: // reference is taller: trim mostly from the bottom
		ch := max(1, (sw*h+w/2)/w)
		y0 := sb.Min.Y + (sh-ch)*3/10
		crop = image.Rect(sb.Min.X, y0, sb.Max.X, y0+ch)
	}
	if zw, zh := crop.Dx()*1000/zoom, crop.Dy()*1000/zoom; zw >= 1 && zh >= 1 {
		x0 := crop.Min.X + (crop.Dx()-zw)*fx/1000
		y0 := crop.Min.Y + (crop.Dy()-zh)*fy/1000
		crop = image.Rect(x0, y0, x0+zw, y0+zh)
	}
	src, ok := ref.(*image.RGBA) // what the PNG decoder returns for opaque images
	if ok {
		src = src.SubImage(crop).(*image.RGBA)
	} else {
		src = image.NewRGBA(image.Rect(0, 0, crop.Dx(), crop.Dy()))
		draw.Draw(src, src.Rect, ref, crop.Min, draw.Src)
	}
	if k := min(crop.Dx()/w, crop.Dy()/h); k >= 2 {
		src = shrink(src, k)
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range dst.Pix {
		dst.Pix[i] = 0xff // transparent parts of the reference land on white
	}
	draw.ApproxBiLinear.Scale(dst, dst.Rect, src, src.Rect, draw.Over, nil)
	return dst
}

// shrink averages k×k blocks of src (premultiplied, so alpha is handled),
// dropping the partial blocks at the right and bottom edges.
func shrink(src *image.RGBA, k int) *image.RGBA {
	w, h := src.Rect.Dx()/k, src.Rect.Dy()/k
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	sums := make([]int, w*4)
	n := k * k
	for y := range h {
		clear(sums)
		for sy := range k {
			start := src.PixOffset(src.Rect.Min.X, src.Rect.Min.Y+y*k+sy)
			row := src.Pix[start : start+w*k*4]
			for x := range w {
				var s0, s1, s2, s3 int
				blk := row[x*k*4 : (x+1)*k*4]
				for i := 0; i+4 <= len(blk); i += 4 {
					p := blk[i : i+4 : i+4]
					s0 += int(p[0])
					s1 += int(p[1])
					s2 += int(p[2])
					s3 += int(p[3])
				}
				s := sums[x*4 : x*4+4 : x*4+4]
				s[0] += s0
				s[1] += s1
				s[2] += s2
				s[3] += s3
			}
		}
		out := dst.Pix[y*dst.Stride:]
		for i, v := range sums {
			out[i] = uint8(v / n)
		}
	}
	return dst
}

// vary applies the prompt- and seed-derived variation: a colour wash whose
// hue comes from the prompt, a few translucent shapes placed by a PRNG
// seeded from (seed, prompt), and a thin band at the bottom whose colours
// encode the prompt.
func vary(img *image.RGBA, prompt string, seed int64) {
	f := fnv.New64a()
	f.Write([]byte(prompt))
	ph := f.Sum64()
	w, h := img.Rect.Dx(), img.Rect.Dy()
	long := max(w, h)
	pix := img.Pix

	// Colour wash: about 22% of a hue chosen by the prompt.
	wr, wg, wb := hsv(float64(ph%360), 0.8, 1)
	const wash = 56 // of 256
	for i := 0; i < len(pix); i += 4 {
		pix[i] = uint8(int(pix[i]) + (int(wr)-int(pix[i]))*wash/256)
		pix[i+1] = uint8(int(pix[i+1]) + (int(wg)-int(pix[i+1]))*wash/256)
		pix[i+2] = uint8(int(pix[i+2]) + (int(wb)-int(pix[i+2]))*wash/256)
	}

	// Translucent shapes: soft discs (like bokeh) and light stripes.
	rng := rand.New(rand.NewPCG(uint64(seed), ph))
	for range 3 + rng.IntN(4) {
		cr, cg, cb := hsv(rng.Float64()*360, 0.5, 1)
		alpha := 40 + rng.IntN(48) // of 256
		if rng.IntN(10) < 7 {
			cx, cy := rng.IntN(w), rng.IntN(h)
			r := max(2, long*(5+rng.IntN(14))/100)
			disc(img, cx, cy, r, cr, cg, cb, alpha)
			continue
		}
		theta := rng.Float64() * math.Pi
		nx, ny := int(math.Round(math.Cos(theta)*1024)), int(math.Round(math.Sin(theta)*1024))
		off := rng.IntN(w)*nx + rng.IntN(h)*ny
		half := max(1, long*(2+rng.IntN(5))/100) * 1024
		for y := range h {
			row := pix[y*img.Stride:]
			for x := range w {
				if d := x*nx + y*ny - off; d > -half && d < half {
					blend(row[x*4:], cr, cg, cb, alpha)
				}
			}
		}
	}

	// Prompt band: eight segments coloured by the prompt hash.
	bh := max(2, h/64)
	for y := h - bh; y < h; y++ {
		row := pix[y*img.Stride:]
		for x := range w {
			b := uint8(ph >> (8 * (x * 8 / w)))
			r, g, bl := hsv(float64(b)*360/256, 0.75, 0.95)
			row[x*4], row[x*4+1], row[x*4+2] = r, g, bl
		}
	}
}

// disc blends a soft-edged disc of radius r centred on (cx, cy).
func disc(img *image.RGBA, cx, cy, r int, cr, cg, cb uint8, alpha int) {
	r2 := r * r
	b := image.Rect(cx-r, cy-r, cx+r+1, cy+r+1).Intersect(img.Rect)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		row := img.Pix[y*img.Stride:]
		for x := b.Min.X; x < b.Max.X; x++ {
			d2 := (x-cx)*(x-cx) + (y-cy)*(y-cy)
			if d2 > r2 {
				continue
			}
			// Full strength inside 3/4 of r², fading to zero at the rim.
			a := alpha * min(4*(r2-d2), r2) / r2
			blend(row[x*4:], cr, cg, cb, a)
		}
	}
}

// blend mixes colour (r, g, b) into the pixel p at alpha/256.
func blend(p []uint8, r, g, b uint8, alpha int) {
	p[0] = uint8(int(p[0]) + (int(r)-int(p[0]))*alpha/256)
	p[1] = uint8(int(p[1]) + (int(g)-int(p[1]))*alpha/256)
	p[2] = uint8(int(p[2]) + (int(b)-int(p[2]))*alpha/256)
}

// hsv converts hue (degrees), saturation and value in [0, 1] to RGB.
func hsv(hue, s, v float64) (r, g, b uint8) {
	hue = math.Mod(hue, 360) / 60
	c := v * s
	x := c * (1 - math.Abs(math.Mod(hue, 2)-1))
	var rf, gf, bf float64
	switch int(hue) {
	case 0:
		rf, gf = c, x
	case 1:
		rf, gf = x, c
	case 2:
		gf, bf = c, x
	case 3:
		gf, bf = x, c
	case 4:
		rf, bf = x, c
	default:
		rf, bf = c, x
	}
	m := v - c
	to8 := func(f float64) uint8 { return uint8(math.Round((f + m) * 255)) }
	return to8(rf), to8(gf), to8(bf)
}
