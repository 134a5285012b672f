package provider

import "time"

// openaiModels are the models served by the openai adapter
// (pkg/provider/openai), reached directly on OpenAI's Images API.
//
// Parameter names and values follow openai/gpt-image-1 on Replicate where the
// two overlap (aspect_ratio, quality, input_fidelity, background,
// output_format, output_compression, moderation), so a spec can switch
// between the two routes by changing only the model reference. Two defaults
// differ from Replicate's, because they are what the adapter sends:
// input_fidelity is "high" (faces are the point of likeness), and
// aspect_ratio has no default (OpenAI's size defaults to "auto", so the
// worker does not check the aspect of an unconstrained output).
//
// Prices are OpenAI's per-image list prices for a 1024x1024 output
// (low $0.011, medium $0.042, high $0.167; "auto" is priced as high, the most
// it can cost). Portrait and landscape outputs cost more (low $0.016, medium
// $0.063, high $0.25) and input image tokens come on top, so estimates for
// 3:2 and 2:3 runs are low by up to a third; Pricing has one price axis.
//
// Limits: OpenAI limits images per minute by usage tier (the published
// table for GPT Image models reads tier 1: 5, tier 2: 20, tier 3: 50,
// tier 4: 150, tier 5: 250). The default is tier 1's 5 images per minute, so
// a new account is never pushed into 429s; raise it for higher tiers with a
// LIKENESS_LIMITS file.
// Concurrency 8 bounds open requests (each stays open for the whole
// generation, 16-59 s).
func openaiModels() []Model {
	ratio := []string{"1:1", "3:2", "2:3"}
	return []Model{{
		Ref: "openai:gpt-image-1", Provider: "openai", Name: "gpt-image-1",
		Description: "OpenAI GPT Image 1 on the Images API: the reference is sent as an input image to /images/edits with high input fidelity; synchronous, base64 output",
		Params: []Param{
			{Name: "aspect_ratio", Type: String, Enum: ratio, Description: "output aspect ratio: 1:1 = 1024x1024, 3:2 = 1536x1024, 2:3 = 1024x1536; unset leaves it to size"},
			{Name: "size", Type: String, Enum: []string{"auto", "1024x1024", "1536x1024", "1024x1536"}, Default: "auto", Description: "output size in pixels (OpenAI's own form of aspect_ratio; set one of the two, or both agreeing)"},
			{Name: "quality", Type: String, Enum: []string{"low", "medium", "high", "auto"}, Default: "auto", Description: "rendering quality; sets the price"},
			{Name: "input_fidelity", Type: String, Enum: []string{"low", "high"}, Default: "high", Description: "how closely the output keeps the reference's face and features; high costs more input tokens"},
			{Name: "background", Type: String, Enum: []string{"auto", "transparent", "opaque"}, Default: "auto", Description: "background; transparent needs output_format png or webp"},
			{Name: "output_format", Type: String, Enum: []string{"png", "jpeg", "webp"}, Default: "png", Description: "encoding of the output"},
			{Name: "output_compression", Type: Integer, Min: Range(0), Max: Range(100), Default: 100, Description: "compression level in percent; jpeg and webp only"},
			{Name: "moderation", Type: String, Enum: []string{"auto", "low"}, Default: "auto", Description: "moderation strictness; OpenAI accepts it on text-to-image generations only, so it is not sent with a reference image"},
		},
		Output:  OutputBase64,
		Pricing: Pricing{Base: 0.167, ByParam: "quality", Table: map[string]float64{"low": 0.011, "medium": 0.042, "high": 0.167, "auto": 0.167}},
		Latency: 35 * time.Second,
		Limits:  Limits{Key: "openai", RequestsPerMinute: 5, Concurrency: 8},
		// /images/edits with the image first and the mask as its alpha.
		Inpainting: true,
	}}
}
