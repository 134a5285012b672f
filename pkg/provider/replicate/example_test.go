package replicate_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/replicate"
)

// A worker builds one Client per process and calls Generate once per task
// attempt; the queue retries by error class.
func ExampleClient_Generate() {
	c, err := replicate.New(replicate.Config{
		APIKey:    os.Getenv("REPLICATE_API_TOKEN"),
		OpenAIKey: os.Getenv("OPENAI_API_KEY"), // only for openai/gpt-image-1
	})
	if err != nil {
		log.Fatal(err)
	}
	ref, err := os.ReadFile("refs/mara.png")
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Generate(context.Background(), provider.Request{
		Model:     "ideogram-ai/ideogram-character",
		Prompt:    "she is playing the piano",
		Character: "mara",
		Reference: provider.Image{Data: ref},
		Seed:      42,
		Params:    map[string]any{"rendering_speed": "Turbo"},
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

func ExampleClient_Tags() {
	c, err := replicate.New(replicate.Config{APIKey: os.Getenv("REPLICATE_API_TOKEN")})
	if err != nil {
		log.Fatal(err)
	}
	tags, err := c.Tags(context.Background(), "Mara plays a grand piano in a sunlit hall.", 5)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tags)
}

// Runway's Gen-4 models name references in the prompt by tag; a prompt that
// does not mention the character's tag gets it appended.
func ExampleRunwayTag() {
	tag := replicate.RunwayTag("Mara-Jane")
	fmt.Println(tag)
	fmt.Println(replicate.MentionTag("she is playing the piano", tag))
	fmt.Println(replicate.MentionTag("@marajane at the piano", tag))
	// Output:
	// marajane
	// she is playing the piano (@marajane)
	// @marajane at the piano
}
