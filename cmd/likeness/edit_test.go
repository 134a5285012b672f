package main

import (
	"image"
	"image/color"
	_ "image/png"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
)

// TestInpaintingExampleEmbedded runs examples/inpainting.yaml: the edit
// prompt's outputs keep the scene's frame and, under the mask's black, its
// pixels; the records name the image and mask; the plain prompt is an
// ordinary generation.
func TestInpaintingExampleEmbedded(t *testing.T) {
	t.Parallel()
	recs, out := runLocal(t, nil, filepath.Join("..", "..", "examples", "inpainting.yaml"))
	if len(recs) != 16 {
		t.Fatalf("manifest has %d records; want 16", len(recs))
	}
	scene, mask := exampleScene(t)
	edits := 0
	for _, r := range recs {
		if r.Prompt != "by-the-window" {
			if r.EditImageKey != "" || r.EditMaskKey != "" {
				t.Errorf("%s: a plain prompt's record names an edit: %s %s", r.Task, r.EditImageKey, r.EditMaskKey)
			}
			continue
		}
		edits++
		if r.EditImageKey == "" || r.EditMaskKey == "" || r.EditImageKey == r.EditMaskKey {
			t.Errorf("%s: record names image %q and mask %q", r.Task, r.EditImageKey, r.EditMaskKey)
		}
		checkEdit(t, r.OutputKey, decodeFile(t, filepath.Join(out, r.OutputKey)), scene, mask)
	}
	if edits != 8 {
		t.Errorf("%d edit records; want 8 (2 characters × 2 models × 2 variants)", edits)
	}
	// The report shows the edited image beside the reference, and links
	// the mask; both resolve from the report's directory.
	var found int
	for page, html := range reportPages(t, filepath.Join(out, "runs", recs[0].Run)) {
		links := regexp.MustCompile(`(?s)<img src="([^"]+)" alt="the image this prompt repaints"[^>]*>.*?<a href="([^"]+)">mask</a>`).FindAllStringSubmatch(html, -1)
		found += len(links)
		for _, l := range links {
			for _, href := range l[1:] {
				if _, err := os.Stat(filepath.Join(filepath.Dir(page), filepath.FromSlash(href))); err != nil {
					t.Errorf("%s: link %s: %v", page, href, err)
				}
			}
		}
	}
	if found != 2 { // one per character page
		t.Fatalf("report shows %d edited images; want 2", found)
	}
}

// TestInpaintingThroughTheSimulator sends an edit through the real Replicate
// adapter to `likeness sim-provider`'s protocol: the adapter turns the mask
// into Ideogram's convention (black = repaint) and the simulator turns it
// back, so the kept pixels prove both conversions.
func TestInpaintingThroughTheSimulator(t *testing.T) {
	t.Parallel()
	base := serveSim(t)
	path := writeSpec(t, `version: 1
name: inpaint-replicate
characters:
  - {id: mara, reference: refs/mara.png}
prompts:
  - {id: window, text: "standing by the window", image: refs/room.png, mask: refs/room-mask.png}
models:
  - {id: ideogram, model: "replicate:ideogram-ai/ideogram-character", params: {rendering_speed: Turbo}}
`)
	for _, name := range []string{"room.png", "room-mask.png"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "examples", "refs", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(path), "refs", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	recs, out := runLocal(t, []string{
		"REPLICATE_API_TOKEN=" + providertest.ReplicateToken,
		"LIKENESS_REPLICATE_BASE_URL=" + base,
	}, path)
	if len(recs) != 1 || recs[0].Status != manifest.Succeeded {
		t.Fatalf("records: %+v", recs)
	}
	scene, mask := exampleScene(t)
	checkEdit(t, recs[0].OutputKey, decodeFile(t, filepath.Join(out, recs[0].OutputKey)), scene, mask)
}

// runLocal runs a spec in the embedded mode with env added and returns its
// manifest and the output directory.
func runLocal(t *testing.T, env []string, spec string) ([]manifest.Record, string) {
	t.Helper()
	out := t.TempDir()
	code, stdout, stderr := likeness(t, append([]string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT="}, env...),
		"run", spec, "--out", out, "--no-progress")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	runs, _ := filepath.Glob(filepath.Join(out, "runs", "*"))
	if len(runs) != 1 {
		t.Fatalf("want one run directory, got %v", runs)
	}
	return readManifest(t, func(k string) ([]byte, error) { return os.ReadFile(filepath.Join(out, k)) }, filepath.Base(runs[0])), out
}

// exampleScene is the image and mask of examples/inpainting.yaml.
func exampleScene(t *testing.T) (scene, mask image.Image) {
	t.Helper()
	dir := filepath.Join("..", "..", "examples", "refs")
	return decodeFile(t, filepath.Join(dir, "room.png")), decodeFile(t, filepath.Join(dir, "room-mask.png"))
}

// checkEdit fails the test unless out is scene with its pixels kept where
// mask is black and repainted where it is not (99% of them: the painted
// character may match the scene here and there).
func checkEdit(t *testing.T, name string, out, scene, mask image.Image) {
	t.Helper()
	if out.Bounds() != scene.Bounds() {
		t.Fatalf("%s: output %v, want the scene's %v", name, out.Bounds(), scene.Bounds())
	}
	kept, repainted, total := 0, 0, scene.Bounds().Dx()*scene.Bounds().Dy()
	for y := range scene.Bounds().Dy() {
		for x := range scene.Bounds().Dx() {
			same := sameColor(out.At(x, y), scene.At(x, y))
			if m, _, _, _ := mask.At(x, y).RGBA(); m == 0 && same {
				kept++
			} else if m != 0 && !same {
				repainted++
			}
		}
	}
	if kept+repainted < total*99/100 {
		t.Errorf("%s: %d pixels kept under black and %d repainted under white, of %d: the mask's convention was lost on the way", name, kept, repainted, total)
	}
}

func decodeFile(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

func sameColor(a, b color.Color) bool {
	ar, ag, ab, _ := a.RGBA()
	br, bg, bb, _ := b.RGBA()
	return ar>>8 == br>>8 && ag>>8 == bg>>8 && ab>>8 == bb>>8
}
