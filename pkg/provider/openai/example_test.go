package openai_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/openai"
)

// One attempt of a task: the worker builds the Request, the adapter sends
// one edit with the reference and returns the decoded image or a classified
// error. (Not run: it needs an OpenAI key and a verified organisation.)
func Example() {
	client, err := openai.New(openai.Config{APIKey: os.Getenv("OPENAI_API_KEY")})
	if err != nil {
		log.Fatal(err)
	}
	ref, err := os.ReadFile("refs/mara.png")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), openai.DefaultTimeout)
	defer cancel()
	res, err := client.Generate(ctx, provider.Request{
		Model:     "gpt-image-1",
		Prompt:    "she is playing the piano",
		Character: "mara",
		Reference: provider.Image{Data: ref},
		Params:    map[string]any{"aspect_ratio": "2:3", "quality": "medium"},
	})
	switch provider.ClassOf(err) {
	case "":
		fmt.Printf("%s, %d bytes, $%.3f, request %s\n", res.Image.ContentType, len(res.Image.Data), res.CostUSD, res.RequestID)
	case provider.Rate:
		fmt.Println("wait", provider.RetryAfterOf(err).Round(time.Second))
	default:
		fmt.Println("failed:", err)
	}
}
