package provider

import "time"

// ideogramModels are the models served by the ideogram adapter
// (pkg/provider/ideogram, Ideogram's own API).
//
// The parameters use Replicate's names and values for
// ideogram-ai/ideogram-character (shared/providers.md section 1), so a spec
// can move a model between replicate: and ideogram: without touching its
// params; the adapter maps them to Ideogram's wire form (Turbo -> TURBO,
// "3:4" -> "3x4", magic_prompt_option -> magic_prompt). negative_prompt is
// the one addition: the direct API accepts it and Replicate's model does not.
//
// Limits: Ideogram admits 10 images in flight per organisation across all
// endpoints (section 5). A request for N images takes N slots; the adapter
// always asks for one image per request, so one request is one slot and the
// fleet-wide concurrency cap is 10.
func ideogramModels() []Model {
	return []Model{{
		Ref:      "ideogram:ideogram-3-character",
		Provider: "ideogram",
		Name:     "ideogram-3-character",
		Description: "Ideogram 3.0 with a character reference image, on Ideogram's API; " +
			"billed even when the output is withheld as unsafe",
		Params: []Param{
			{Name: "rendering_speed", Type: String, Enum: []string{"Default", "Turbo", "Quality"}, Default: "Default",
				Description: "speed/quality tier; sets the price"},
			{Name: "style_type", Type: String, Enum: []string{"Auto", "Fiction", "Realistic"}, Default: "Auto",
				Description: "style of the output"},
			{Name: "aspect_ratio", Type: String, Enum: ideogramAspectRatios(), Default: "1:1",
				Description: "output aspect ratio; ignored when resolution is set or when inpainting"},
			{Name: "resolution", Type: String, Enum: ideogramResolutions(), Default: "None",
				Description: "exact output size WxH (a common subset of Ideogram 3.0's list); overrides aspect_ratio"},
			{Name: "magic_prompt_option", Type: String, Enum: []string{"Auto", "On", "Off"}, Default: "Auto",
				Description: "let Ideogram rewrite the prompt (the rewrite is recorded as the revised prompt)"},
			{Name: "negative_prompt", Type: String,
				Description: "what to leave out (Ideogram API only; not sent when inpainting)"},
		},
		Output: OutputURI,
		Pricing: Pricing{
			Base:    0.15,
			ByParam: "rendering_speed",
			Table:   map[string]float64{"Turbo": 0.10, "Default": 0.15, "Quality": 0.20},
		},
		Latency: 14500 * time.Millisecond,
		Limits:  Limits{Key: "ideogram", Concurrency: 10},
		// The adapter sends an inpainting request to /v1/ideogram-v3/inpaint.
		Inpainting: true,
	}}
}

// ideogramAspectRatios are Ideogram 3.0's aspect ratios in Replicate's
// notation (the API itself writes "3x4").
func ideogramAspectRatios() []string {
	return []string{"1:3", "3:1", "1:2", "2:1", "9:16", "16:9", "10:16", "16:10", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "1:1"}
}

// ideogramResolutions are "None" plus the same common subset of Ideogram
// 3.0's 69 output sizes (512x1536 ... 1536x640) that the replicate: entry for
// ideogram-ai/ideogram-character offers, so a spec validates the same way on
// both. Both APIs accept the whole list; widen the two entries together.
func ideogramResolutions() []string {
	return []string{"None", "1024x1024", "1152x864", "864x1152", "1248x832", "832x1248", "1344x768", "768x1344", "1536x640", "640x1536"}
}
