package sim

import (
	"image"
	"image/draw"
	_ "image/jpeg"
	"os"
	"path/filepath"
	"testing"
)

func TestZZSamples(t *testing.T) {
	dir := "/tmp/simout"
	ref := image.Image(portrait(600, 800))
	os.WriteFile(filepath.Join(dir, "ref.png"), encodePNG(t, ref), 0o644)
	f, _ := os.Open("/root/go/pkg/mod/golang.org/x/image@v0.47.0/testdata/go-turns-two-280x360.jpeg")
	gopher, _, err := image.Decode(f)
	if err != nil { t.Fatal(err) }
	var tiles []image.Image
	for _, r := range []struct{ name string; img image.Image }{{"portrait", ref}, {"gopher", gopher}} {
		for _, p := range []string{"kontext", "ideogram", "seededit", "gpt-image", "flaky"} {
			for i, pr := range []string{"she is playing the piano", "restyle this person as anime"} {
				out, err := Render(r.img, p, pr, 42, map[string]any{"aspect_ratio": "3:4"})
				if err != nil { t.Fatal(err) }
				os.WriteFile(filepath.Join(dir, r.name+"-"+p+"-"+string(rune('a'+i))+".png"), encodePNG(t, out), 0o644)
				tiles = append(tiles, out)
			}
		}
	}
	// sheet: rows = ref x prompt, cols = profiles
	tw, th := 384, 512
	sheet := image.NewRGBA(image.Rect(0, 0, tw*5, th*4))
	k := 0
	for ri := 0; ri < 2; ri++ {
		for pi := 0; pi < 5; pi++ {
			for i := 0; i < 2; i++ {
				row := ri*2 + i
				draw.Draw(sheet, image.Rect(pi*tw, row*th, pi*tw+tw, row*th+th), tiles[k], image.Point{}, draw.Src)
				k++
			}
		}
	}
	os.WriteFile(filepath.Join(dir, "sheet.png"), encodePNG(t, sheet), 0o644)
}
