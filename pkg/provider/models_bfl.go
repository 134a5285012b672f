package provider

import "time"

// bflModels are the models served by the bfl adapter (pkg/provider/bfl):
// FLUX.1 Kontext [pro] and [max] on Black Forest Labs' own API. Parameter
// names and values are those of the Replicate-hosted
// black-forest-labs/flux-kontext-* models, so a spec can switch between
// "replicate:black-forest-labs/flux-kontext-pro" and "bfl:flux-kontext-pro"
// without touching its params; the adapter maps them to BFL's wire form.
//
// Limits: BFL caps active (submitted, not yet finished) tasks per account:
// 24 for most endpoints, 6 for Kontext [max]. Kontext [max] tasks also count
// against the account's 24, so a fleet running both models should keep the
// "bfl" limit at 24 and know that up to 6 of those slots may be max tasks;
// the separate "bfl:flux-kontext-max" key enforces the stricter cap.
func bflModels() []Model {
	params := func() []Param {
		return []Param{
			{
				Name: "aspect_ratio", Type: String, Default: "match_input_image",
				Enum:        []string{"match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "21:9", "9:21", "2:1", "1:2"},
				Description: "output aspect ratio; match_input_image keeps the reference's",
			},
			{
				Name: "output_format", Type: String, Enum: []string{"jpg", "png"}, Default: "png",
				Description: "encoding of the output",
			},
			{
				Name: "safety_tolerance", Type: Integer, Min: Range(0), Max: Range(2), Default: 2,
				Description: "moderation strictness, 0 strictest; 2 is BFL's maximum when an input image is sent",
			},
			{
				Name: "prompt_upsampling", Type: Boolean, Default: false,
				Description: "let BFL rewrite the prompt for creativity",
			},
		}
	}
	return []Model{
		{
			Ref: "bfl:flux-kontext-pro", Provider: "bfl", Name: "flux-kontext-pro",
			Description: "FLUX.1 Kontext [pro] on the BFL API: in-context edit of the reference",
			Params:      params(), Output: OutputURI,
			Pricing: Pricing{Base: 0.04}, Latency: 5 * time.Second,
			Limits: Limits{Key: "bfl", Concurrency: 24},
		},
		{
			Ref: "bfl:flux-kontext-max", Provider: "bfl", Name: "flux-kontext-max",
			Description: "FLUX.1 Kontext [max] on the BFL API: highest-quality Kontext edit",
			Params:      params(), Output: OutputURI,
			Pricing: Pricing{Base: 0.08}, Latency: 7 * time.Second,
			// Max tasks also occupy slots of the account-wide 24 ("bfl").
			Limits: Limits{Key: "bfl:flux-kontext-max", Concurrency: 6},
		},
	}
}
