package sim

import (
	"context"
	"errors"
	"image"
	"image/color"
	"testing"

	"github.com/likeness-run/likeness/pkg/provider"
)

// scene is a w×h picture to edit: horizontal stripes, so kept pixels are
// easy to recognise.
func scene(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, color.NRGBA{uint8(40 + 60*(y/8%3)), uint8(90 + x%50), 200, 0xff})
		}
	}
	return img
}

// rightHalf is a w×h mask: white (repaint) on the right half, black (keep)
// on the left.
func rightHalf(w, h int) *image.Gray {
	m := image.NewGray(image.Rect(0, 0, w, h))
	for y := range h {
		for x := w / 2; x < w; x++ {
			m.SetGray(x, y, color.Gray{0xff})
		}
	}
	return m
}

func TestGenerateEdit(t *testing.T) {
	t.Parallel()
	c, ref := setup(t)
	const w, h = 240, 160
	src := scene(w, h)
	req := request(ref)
	req.Model = "ideogram"
	req.Params = map[string]any{"aspect_ratio": "1:1", "size": 512} // an edit keeps the image's frame
	req.Image = &provider.Image{Data: encodePNG(t, src), ContentType: "image/png"}
	req.Mask = &provider.Image{Data: encodePNG(t, rightHalf(w, h)), ContentType: "image/png"}
	_, out := generate(t, c, req)
	if got := out.Bounds().Size(); got != image.Pt(w, h) {
		t.Fatalf("output is %v, want the edited image's %dx%d", got, w, h)
	}
	changed := 0
	for y := range h {
		for x := range w {
			same := colorsEqual(out.At(x, y), src.At(x, y))
			switch {
			case x < w/2 && !same:
				t.Fatalf("pixel (%d,%d) under black mask changed: %v, was %v", x, y, out.At(x, y), src.At(x, y))
			case x >= w/2 && !same:
				changed++
			}
		}
	}
	if changed < w*h/2*9/10 {
		t.Errorf("%d of %d pixels under white mask repainted; want nearly all", changed, w*h/2)
	}

	// The same edit again gives the same bytes; another seed another picture.
	_, again := generate(t, c, req)
	if meanDiff(t, out, again) != 0 {
		t.Error("the same edit rendered differently")
	}
	req.Seed++
	if _, other := generate(t, c, req); meanDiff(t, out, other) == 0 {
		t.Error("another seed rendered the same edit")
	}
}

func TestGenerateEditRefused(t *testing.T) {
	t.Parallel()
	c, ref := setup(t)
	img := &provider.Image{Data: encodePNG(t, scene(40, 30))}
	mask := &provider.Image{Data: encodePNG(t, rightHalf(40, 30))}
	small := &provider.Image{Data: encodePNG(t, rightHalf(20, 30))}
	tests := []struct {
		name        string
		model       string
		image, mask *provider.Image
	}{
		{"a profile that does not inpaint", "kontext", img, mask},
		{"image without mask", "ideogram", img, nil},
		{"mask without image", "gpt-image", nil, mask},
		{"mask of another size", "ideogram", img, small},
		{"undecodable image", "ideogram", &provider.Image{Data: []byte("x")}, mask},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := request(ref)
			req.Model, req.Image, req.Mask = tt.model, tt.image, tt.mask
			_, err := c.Generate(context.Background(), req)
			var pe *provider.Error
			if !errors.As(err, &pe) || pe.Class != provider.Input || pe.Code != "sim_invalid_edit" {
				t.Fatalf("Generate = %v, want an Input error sim_invalid_edit", err)
			}
		})
	}
}

func colorsEqual(a, b color.Color) bool {
	ar, ag, ab, aa := a.RGBA()
	br, bg, bb, ba := b.RGBA()
	return ar>>8 == br>>8 && ag>>8 == bg>>8 && ab>>8 == bb>>8 && aa>>8 == ba>>8
}
