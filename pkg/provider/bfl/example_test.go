package bfl_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/bfl"
)

// Example shows one Kontext [pro] generation against the real API. It is
// compiled but not run: it needs BFL_API_KEY and the network.
func Example() {
	c, err := bfl.New(bfl.Config{APIKey: os.Getenv("BFL_API_KEY")})
	if err != nil {
		log.Fatal(err)
	}
	ref, err := os.ReadFile("refs/mara.png")
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Generate(context.Background(), provider.Request{
		Model:     "flux-kontext-pro",
		Prompt:    "she is playing the piano",
		Reference: provider.Image{Data: ref},
		Seed:      42,
		Params:    map[string]any{"aspect_ratio": "3:4", "output_format": "png"},
	})
	switch provider.ClassOf(err) {
	case "":
		fmt.Println(res.RequestID, res.Image.ContentType, res.CostUSD)
	case provider.Rate:
		fmt.Println("wait", provider.RetryAfterOf(err))
	default:
		fmt.Println("failed:", err)
	}
}
