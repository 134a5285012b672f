package replicate

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	_ "image/gif"  // mask formats accepted by invertMask
	_ "image/jpeg" // mask formats accepted by invertMask
	"image/png"
	"math"
	"strings"

	"github.com/likeness-run/likeness/pkg/provider"
	_ "golang.org/x/image/webp" // mask formats accepted by invertMask
)

// Models with an input mapping, by Replicate name.
const (
	modelKontextPro = "black-forest-labs/flux-kontext-pro"
	modelKontextMax = "black-forest-labs/flux-kontext-max"
	modelKontextDev = "black-forest-labs/flux-kontext-dev"
	modelIdeogram   = "ideogram-ai/ideogram-character"
	modelGen4       = "runwayml/gen4-image"
	modelGen4Turbo  = "runwayml/gen4-image-turbo"
	modelSeedEdit   = "bytedance/seededit-3.0"
	modelGPTImage   = "openai/gpt-image-1"
	// TagsModel is the text model behind Client.Tags.
	TagsModel = "intelligent-utilities/topic-tags"
)

// kontextMaxSafety is the highest safety_tolerance Kontext pro/max accept
// with an input image.
const kontextMaxSafety = 2

// input maps req onto the model's Replicate input.
func (c *Client) input(ctx context.Context, m provider.Model, req provider.Request) (map[string]any, error) {
	if strings.TrimSpace(req.Prompt) == "" {
		return nil, c.errorf(provider.Input, "empty prompt")
	}
	if req.Image != nil && req.Model != modelIdeogram {
		return nil, c.errorf(provider.Input, "%s does not support inpainting (Request.Image)", req.Model)
	}
	if req.Model == modelGPTImage && c.cfg.OpenAIKey == "" {
		return nil, c.errorf(provider.Billing, "%s runs on your own OpenAI key: set OPENAI_API_KEY", req.Model)
	}
	in := map[string]any{}
	// Spec params, as validated against the registry; secret params are
	// never taken from a spec (the adapter injects them).
	for _, p := range m.Params {
		if v, ok := req.Params[p.Name]; ok && !p.Secret {
			in[p.Name] = v
		}
	}
	in["prompt"] = req.Prompt
	in["seed"] = req.Seed
	ref, err := c.fileInput(ctx, req.Reference, "reference")
	if err != nil {
		return nil, err
	}
	switch req.Model {
	case modelKontextPro, modelKontextMax:
		in["input_image"] = ref
		if v, ok := toFloat(in["safety_tolerance"]); ok && v > kontextMaxSafety {
			in["safety_tolerance"] = kontextMaxSafety
		}
	case modelKontextDev:
		in["input_image"] = ref
	case modelIdeogram:
		in["character_reference_image"] = ref
		if req.Image != nil {
			if err := c.inpaint(ctx, in, req); err != nil {
				return nil, err
			}
		}
	case modelGen4, modelGen4Turbo:
		tag := RunwayTag(req.Character)
		in["reference_images"] = []string{ref}
		in["reference_tags"] = []string{tag}
		in["prompt"] = MentionTag(req.Prompt, tag)
	case modelSeedEdit:
		in["image"] = ref
	case modelGPTImage:
		delete(in, "seed") // gpt-image-1 takes no seed
		in["openai_api_key"] = c.cfg.OpenAIKey
		in["input_images"] = []string{ref}
		in["number_of_images"] = 1
		if _, ok := in["input_fidelity"]; !ok {
			in["input_fidelity"] = "high" // keeps faces; Replicate's default is low
		}
	default:
		return nil, c.errorf(provider.Input, "no input mapping for %s", req.Model)
	}
	return in, nil
}

// inpaint adds Ideogram's image and mask for an inpainting request.
func (c *Client) inpaint(ctx context.Context, in map[string]any, req provider.Request) error {
	if req.Mask == nil || len(req.Mask.Data) == 0 {
		return c.errorf(provider.Input, "inpainting needs a mask")
	}
	src, err := c.fileInput(ctx, *req.Image, "inpainting image")
	if err != nil {
		return err
	}
	inv, err := invertMask(req.Mask.Data)
	if err != nil {
		return c.errorf(provider.Input, "mask: %v", err)
	}
	mask, err := c.fileInput(ctx, provider.Image{Data: inv, ContentType: "image/png"}, "mask")
	if err != nil {
		return err
	}
	in["image"], in["mask"] = src, mask
	return nil
}

// invertMask converts a likeness mask (white = repaint, black = keep) to
// Ideogram's (black = repaint, white = keep): a grayscale PNG of inverted
// luminance. Greys stay grey (soft edges survive); transparent pixels have
// no luminance and become white (keep).
func invertMask(data []byte) ([]byte, error) {
	src, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	b := src.Bounds()
	dst := image.NewGray(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			g := color.GrayModel.Convert(src.At(x, y)).(color.Gray)
			dst.SetGray(x, y, color.Gray{Y: 255 - g.Y})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, dst); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Runway tag rules as Replicate's gen4 schema states them: alphanumeric,
// starting with a letter, 3..15 characters. (Runway's own API also allows
// underscores and 16 characters; the tag keeps to what both accept.)
const (
	tagMin = 3
	tagMax = 15
)

// RunwayTag returns the reference tag for a character id on Runway's Gen-4
// models: the id's ASCII letters and digits, lower-cased, prefixed with
// "ref" when that leaves nothing or starts with a digit, padded with "ref"
// when shorter than 3 characters, and cut to 15. "Mara-Jane" → "marajane",
// "42" → "ref42", "al" → "alref". Write "@" + RunwayTag(id) in a prompt to
// place the character yourself.
func RunwayTag(character string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(character) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	t := b.String()
	if t == "" || t[0] < 'a' || t[0] > 'z' {
		t = "ref" + t
	}
	if len(t) < tagMin {
		t += "ref"
	}
	if len(t) > tagMax {
		t = t[:tagMax]
	}
	return t
}

// MentionTag returns prompt with " (@tag)" appended unless the prompt already
// mentions "@tag" as a whole word, so Gen-4 uses the tagged reference. The
// match is case-sensitive: a differently cased mention gets the suffix too,
// which is harmless.
func MentionTag(prompt, tag string) string {
	at := "@" + tag
	for i := 0; ; {
		j := strings.Index(prompt[i:], at)
		if j < 0 {
			break
		}
		end := i + j + len(at)
		if end == len(prompt) || !isTagChar(prompt[end]) {
			return prompt
		}
		i = end
	}
	return strings.TrimRight(prompt, " ") + " (" + at + ")"
}

func isTagChar(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_'
}

// toFloat reads a numeric param value.
func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, !math.IsNaN(n)
	case uint64:
		return float64(n), true
	}
	return 0, false
}
