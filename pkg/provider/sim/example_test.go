package sim_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/png"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/sim"
)

// reference returns a small PNG standing in for a character reference.
func reference() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 90, 120))
	for y := range 120 {
		for x := range 90 {
			img.Set(x, y, color.RGBA{uint8(2 * x), uint8(2 * y), 128, 255})
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

func ExampleClient_Generate() {
	c, err := sim.New(sim.Config{LatencyScale: 0.01}) // 1% of the profile's latency
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := c.Generate(context.Background(), provider.Request{
		Model:     "kontext",
		Prompt:    "she is playing the piano",
		Reference: provider.Image{Data: reference()},
		Seed:      42,
		Params:    map[string]any{"aspect_ratio": "3:4", "size": 640},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg, _, _ := image.DecodeConfig(bytes.NewReader(res.Image.Data))
	fmt.Println(res.Image.ContentType, cfg.Width, cfg.Height, res.CostUSD)
	// Output: image/png 480 640 0.04
}

func ExampleRender() {
	ref, _, _ := image.Decode(bytes.NewReader(reference()))
	img, err := sim.Render(ref, "ideogram", "restyle this person as a poster", 7, map[string]any{"aspect_ratio": "16:9"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(img.Bounds())
	// Output: (0,0)-(512,288)
}
