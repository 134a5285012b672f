package spec

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

func TestEditPrompts(t *testing.T) {
	t.Parallel()
	ref, scene, mask, small := encode(t, "png", 4, 4), encode(t, "png", 6, 4), encode(t, "jpeg", 6, 4), encode(t, "png", 3, 2)
	files := func(body string) fstest.MapFS {
		return fstest.MapFS{
			"s/spec.yaml":  {Data: []byte(body)},
			"s/ref.png":    {Data: ref},
			"s/scene.png":  {Data: scene},
			"s/mask.jpg":   {Data: mask},
			"s/small.png":  {Data: small},
			"s/notimg.png": {Data: []byte("not an image")},
		}
	}
	const head = "version: 1\nname: edits\ncharacters: [{id: c, reference: ref.png}]\n"
	tests := []struct {
		name string
		body string
		want []string // errors, one per line; none: loads
	}{
		{name: "image and mask on inpainting models", body: head + `prompts:
  - {id: plain, text: "at the piano"}
  - id: window
    text: "looking out of the window"
    image: scene.png
    mask: mask.jpg
models:
  - {id: ideogram, model: "sim:ideogram"}
  - {id: gpt, model: "sim:gpt-image"}
`},
		{name: "image without mask", body: head + `prompts:
  - {id: window, text: t, image: scene.png}
models: [{id: m, model: "sim:ideogram"}]
`, want: []string{"s/spec.yaml:5: prompts[0].image: needs a mask beside it (mask: a PNG of the image's size, white where the character is painted in, black where the image is kept)"}},
		{name: "mask without image", body: head + `prompts:
  - {id: window, text: t, mask: mask.jpg}
models: [{id: m, model: "sim:ideogram"}]
`, want: []string{"s/spec.yaml:5: prompts[0].mask: needs the image it masks beside it (image: the picture to repaint)"}},
		{name: "mask of another size", body: head + `prompts:
  - id: window
    text: t
    image: scene.png
    mask: small.png
models: [{id: m, model: "sim:ideogram"}]
`, want: []string{"s/spec.yaml:8: prompts[0].mask: is 3x2 but the image is 6x4; the mask must be the image's size"}},
		{name: "unreadable image", body: head + `prompts:
  - {id: window, text: t, image: notimg.png, mask: ../mask.jpg}
models: [{id: m, model: "sim:ideogram"}]
`, want: []string{
			"s/spec.yaml:5: prompts[0].image: notimg.png is not a PNG, JPEG or WebP image",
			`s/spec.yaml:5: prompts[0].mask: "../mask.jpg" is outside the spec's directory; references must be files below it`,
		}},
		{name: "a model that cannot inpaint", body: head + `prompts:
  - {id: plain, text: t}
  - id: window
    text: t
    image: scene.png
    mask: mask.jpg
models:
  - {id: ideogram, model: "sim:ideogram"}
  - {id: kontext, model: "sim:kontext"}
`, want: []string{"s/spec.yaml:12: models[1].model: sim:kontext cannot inpaint, and prompts[1] (line 8) gives an image and mask to repaint; every prompt runs on every model, so use models that can (the INPAINT column of `likeness models`) or put the edit prompts in a spec of their own"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Load(files(tt.body), "s/spec.yaml", nil)
			if len(tt.want) > 0 {
				if err == nil {
					t.Fatalf("Load succeeded, want errors %q", tt.want)
				}
				if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
					t.Errorf("errors (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Prompts[0].Edit != nil {
				t.Errorf("prompt without image and mask has an edit: %+v", s.Prompts[0].Edit)
			}
			ed := s.Prompts[1].Edit
			if ed == nil {
				t.Fatal("prompt with image and mask has no edit")
			}
			if ed.Image.SHA256 != sha256hex(scene) || ed.Mask.SHA256 != sha256hex(mask) || ed.Mask.Ext != "jpg" || ed.Image.Width != 6 {
				t.Errorf("edit = image %+v, mask %+v", ed.Image.Source, ed.Mask.Source)
			}
		})
	}
}

// TestDigestEdits: an edit's image and mask are part of what the outputs
// depend on.
func TestDigestEdits(t *testing.T) {
	t.Parallel()
	ref, scene, mask := encode(t, "png", 4, 4), encode(t, "png", 6, 4), encode(t, "png", 6, 4)
	mask2 := encode(t, "jpeg", 6, 4)
	load := func(maskFile string) *Spec {
		t.Helper()
		body := "version: 1\nname: d\ncharacters: [{id: c, reference: ref.png}]\nprompts:\n  - {id: w, text: t, image: scene.png, mask: " + maskFile + "}\nmodels: [{id: m, model: \"sim:ideogram\"}]\n"
		s, err := Load(fstest.MapFS{"spec.yaml": {Data: []byte(body)}, "ref.png": {Data: ref}, "scene.png": {Data: scene},
			"mask.png": {Data: mask}, "mask2.jpg": {Data: mask2}}, "spec.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if load("mask.png").Digest() == load("mask2.jpg").Digest() {
		t.Error("specs with different masks have the same digest")
	}
	plain := "version: 1\nname: d\ncharacters: [{id: c, reference: ref.png}]\nprompts: [{id: w, text: t}]\nmodels: [{id: m, model: \"sim:ideogram\"}]\n"
	s, err := Load(fstest.MapFS{"spec.yaml": {Data: []byte(plain)}, "ref.png": {Data: ref}}, "spec.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Digest() == load("mask.png").Digest() {
		t.Error("a spec with an edit has the digest of one without")
	}
}
