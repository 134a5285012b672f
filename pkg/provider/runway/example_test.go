package runway_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/runway"
)

// Example shows one Gen-4 Image generation against the real API. It is
// compiled but not run: it needs RUNWAYML_API_SECRET and the network.
func Example() {
	c, err := runway.New(runway.Config{APIKey: os.Getenv("RUNWAYML_API_SECRET")})
	if err != nil {
		log.Fatal(err)
	}
	ref, err := os.ReadFile("refs/mara.png")
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Generate(context.Background(), provider.Request{
		Model:     "gen4_image",
		Prompt:    "@mara is playing the piano",
		Character: "mara",
		Reference: provider.Image{Data: ref},
		Seed:      42,
		Params:    map[string]any{"aspect_ratio": "3:4", "resolution": "720p"},
	})
	if err != nil {
		fmt.Println(provider.ClassOf(err), err)
		return
	}
	fmt.Println(res.RequestID, res.Image.ContentType, res.CostUSD)
}

// ExampleTag shows the tag a character id becomes and how the prompt is
// made to mention it.
func ExampleTag() {
	tag := runway.Tag("mara-2")
	fmt.Println(tag)
	fmt.Println(runway.PromptWithTag("she is playing the piano", "mara-2", tag))
	fmt.Println(runway.Ratio("21:9", "720p"))
	// Output:
	// mara_2
	// she is playing the piano (@mara_2)
	// 1680:720 <nil>
}
