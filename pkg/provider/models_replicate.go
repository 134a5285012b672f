package provider

import "time"

// replicateLimits is shared by every model on one Replicate account: 600
// prediction creates per minute (shared/providers.md, section 1). Polls and
// uploads count against a separate 3,000/min budget; the concurrency cap keeps
// a fleet polling at the adapter's default 2 s interval inside it
// (3,000 req/min ÷ 30 polls/min per prediction = 100 predictions in flight).
var replicateLimits = Limits{Key: "replicate", RequestsPerMinute: 600, Concurrency: 100}

// kontextAspectRatios are FLUX.1 Kontext's aspect ratios on Replicate.
var kontextAspectRatios = []string{"match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "21:9", "9:21", "2:1", "1:2"}

// replicateModels are the models served by the replicate adapter
// (pkg/provider/replicate). Parameters follow each model's Replicate input
// schema (shared/providers.md, "Model input schemas used by this project");
// prompt, the reference-image field and seed are always supplied by likeness
// and are not listed.
func replicateModels() []Model {
	mk := func(name, desc string, params []Param, out OutputKind, price Pricing, latency time.Duration) Model {
		return Model{
			Ref: "replicate:" + name, Provider: "replicate", Name: name, Description: desc,
			Params: params, Output: out, Pricing: price, Latency: latency, Limits: replicateLimits,
		}
	}
	kontextPro := func() []Param {
		return []Param{
			{Name: "aspect_ratio", Type: String, Enum: kontextAspectRatios, Default: "match_input_image", Description: "output aspect ratio"},
			{Name: "output_format", Type: String, Enum: []string{"jpg", "png"}, Default: "png", Description: "encoding of the output"},
			// Replicate accepts 0..6, but 2 is the maximum when an input
			// image is supplied, and likeness always supplies the
			// reference: a larger value could only fail (or be clamped), so
			// the registry rejects it at submit time.
			{Name: "safety_tolerance", Type: Integer, Min: Range(0), Max: Range(2), Default: 2, Description: "0 is strictest; Replicate's range is 0..6 but 2 is the maximum with an input image, which likeness always sends"},
			{Name: "prompt_upsampling", Type: Boolean, Default: false, Description: "let the model rewrite the prompt"},
		}
	}
	gen4 := func() []Param {
		return []Param{
			{Name: "aspect_ratio", Type: String, Enum: []string{"16:9", "9:16", "4:3", "3:4", "1:1", "21:9"}, Default: "16:9", Description: "output aspect ratio (Replicate's full list is unconfirmed; these are the values seen)"},
			{Name: "resolution", Type: String, Enum: []string{"720p", "1080p"}, Default: "1080p", Description: "output resolution; also the price tier"},
		}
	}
	models := []Model{
		mk("black-forest-labs/flux-kontext-pro", "FLUX.1 Kontext [pro]: instruction edit of the reference", kontextPro(), OutputURI,
			Pricing{Base: 0.04}, 5*time.Second),
		mk("black-forest-labs/flux-kontext-max", "FLUX.1 Kontext [max]: best-quality Kontext edit", kontextPro(), OutputURI,
			Pricing{Base: 0.08}, 7*time.Second),
		mk("black-forest-labs/flux-kontext-dev", "FLUX.1 Kontext [dev]: open-weights Kontext edit", []Param{
			{Name: "aspect_ratio", Type: String, Enum: kontextAspectRatios, Default: "match_input_image", Description: "output aspect ratio"},
			{Name: "num_inference_steps", Type: Integer, Min: Range(4), Max: Range(50), Default: 30, Description: "denoising steps"},
			{Name: "guidance", Type: Number, Min: Range(0), Max: Range(10), Default: 2.5, Description: "guidance scale"},
			{Name: "output_format", Type: String, Enum: []string{"webp", "jpg", "png"}, Default: "webp", Description: "encoding of the output"},
			{Name: "output_quality", Type: Integer, Min: Range(0), Max: Range(100), Default: 80, Description: "jpg/webp quality; ignored for png"},
			{Name: "disable_safety_checker", Type: Boolean, Default: false, Description: "skip the model's NSFW checker"},
			{Name: "go_fast", Type: Boolean, Default: true, Description: "faster, slightly lower-quality inference"},
		}, OutputURI, Pricing{Base: 0.025}, 4*time.Second),
		mk("ideogram-ai/ideogram-character", "Ideogram 3.0 Character: character reference generation and inpainting", []Param{
			{Name: "rendering_speed", Type: String, Enum: []string{"Turbo", "Default", "Quality"}, Default: "Default", Description: "speed/quality trade-off; also the price tier"},
			{Name: "style_type", Type: String, Enum: []string{"Auto", "Fiction", "Realistic"}, Default: "Auto", Description: "rendering style"},
			{Name: "aspect_ratio", Type: String, Enum: []string{"1:3", "3:1", "1:2", "2:1", "9:16", "16:9", "10:16", "16:10", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "1:1"}, Default: "1:1", Description: "output aspect ratio; ignored when resolution is set or when inpainting"},
			{Name: "resolution", Type: String, Enum: []string{"None", "1024x1024", "1152x864", "864x1152", "1248x832", "832x1248", "1344x768", "768x1344", "1536x640", "640x1536"}, Default: "None", Description: "output size (a common subset of Ideogram 3.0's list); overrides aspect_ratio"},
			{Name: "magic_prompt_option", Type: String, Enum: []string{"Auto", "On", "Off"}, Default: "Auto", Description: "let Ideogram rewrite the prompt"},
		}, OutputURI, Pricing{Base: 0.15, ByParam: "rendering_speed", Table: map[string]float64{"Turbo": 0.10, "Default": 0.15, "Quality": 0.20}}, 14500*time.Millisecond),
		mk("runwayml/gen4-image", "Runway Gen-4 Image with a tagged reference", gen4(), OutputURI,
			Pricing{Base: 0.08, ByParam: "resolution", Table: map[string]float64{"720p": 0.05, "1080p": 0.08}}, 24*time.Second),
		// Turbo's Replicate price is unconfirmed; 0.02 is Runway's own (2 credits).
		mk("runwayml/gen4-image-turbo", "Runway Gen-4 Image Turbo: cheaper, faster Gen-4 with a tagged reference", gen4(), OutputURI,
			Pricing{Base: 0.02}, 16*time.Second),
		mk("bytedance/seededit-3.0", "ByteDance SeedEdit 3.0: instruction edit of the reference", []Param{
			{Name: "guidance_scale", Type: Number, Min: Range(1), Max: Range(10), Default: 5.5, Description: "higher follows the prompt more literally"},
		}, OutputURI, Pricing{Base: 0.03}, 13*time.Second),
		// Billed by OpenAI to the user's own key. Prices are OpenAI's list
		// prices for one 1024x1024 image (providers.md, section 2); 3:2 and
		// 2:3 cost about 1.5x, and input-image tokens come on top.
		mk("openai/gpt-image-1", "OpenAI gpt-image-1 via Replicate, billed to your OpenAI key (OPENAI_API_KEY)", []Param{
			{Name: "openai_api_key", Type: String, Secret: true, Description: "injected by the adapter from OPENAI_API_KEY; never set it in a spec"},
			{Name: "aspect_ratio", Type: String, Enum: []string{"1:1", "3:2", "2:3"}, Default: "1:1", Description: "output aspect ratio"},
			{Name: "quality", Type: String, Enum: []string{"low", "medium", "high", "auto"}, Default: "auto", Description: "rendering quality; also the price tier"},
			{Name: "background", Type: String, Enum: []string{"auto", "transparent", "opaque"}, Default: "auto", Description: "transparent needs png or webp"},
			{Name: "output_format", Type: String, Enum: []string{"png", "jpeg", "webp"}, Default: "webp", Description: "encoding of the output"},
			{Name: "output_compression", Type: Integer, Min: Range(0), Max: Range(100), Default: 90, Description: "jpeg/webp compression"},
			{Name: "moderation", Type: String, Enum: []string{"auto", "low"}, Default: "auto", Description: "OpenAI moderation strictness"},
			{Name: "input_fidelity", Type: String, Enum: []string{"low", "high"}, Default: "high", Description: "how closely to keep the reference's features; likeness defaults to high (Replicate: low) because references are faces"},
		}, OutputURIArray, Pricing{Base: 0.167, ByParam: "quality", Table: map[string]float64{"low": 0.011, "medium": 0.042, "high": 0.167, "auto": 0.167}}, 45*time.Second),
		// A text model used for dataset tagging through the adapter's Tags
		// method, not for images. Its price is not in providers.md.
		mk("intelligent-utilities/topic-tags", "topic tags for a text (dataset tagging; not an image model)", []Param{},
			OutputText, Pricing{}, 2500*time.Millisecond),
	}
	for i := range models {
		// Of the Replicate models, only Ideogram Character takes an image
		// and mask to repaint (providers.md, section 1).
		models[i].Inpainting = models[i].Name == "ideogram-ai/ideogram-character"
	}
	return models
}
