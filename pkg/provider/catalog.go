package provider

import "time"

// Catalog returns every model likeness knows, as a fresh slice the caller
// may modify. Adapters for each provider implement the wire protocol; this
// list is the single place their parameters, prices and limits are declared,
// so spec validation, estimates and `likeness models` agree.
func Catalog() []Model {
	return append(simModels(), hostedModels()...)
}

// DefaultRegistry returns a registry of Catalog().
func DefaultRegistry() *Registry { return NewRegistry(Catalog()...) }

// simAspectRatios are the aspect ratios the simulator renders.
var simAspectRatios = []string{"match_input_image", "1:1", "3:4", "4:3", "2:3", "3:2", "9:16", "16:9"}

func simParams() []Param {
	return []Param{
		{Name: "aspect_ratio", Type: String, Enum: simAspectRatios, Default: "1:1", Description: "output aspect ratio"},
		{Name: "size", Type: Integer, Min: Range(64), Max: Range(2048), Default: 512, Description: "long side of the output in pixels"},
		{Name: "latency_ms", Type: Integer, Min: Range(0), Max: Range(600000), Description: "mean simulated latency; overrides the profile"},
		{Name: "fail_rate", Type: Number, Min: Range(0), Max: Range(1), Description: "share of attempts answered with a transient 5xx"},
		{Name: "blank_rate", Type: Number, Min: Range(0), Max: Range(1), Description: "share of attempts returning a blank (black) image"},
		{Name: "safety_rate", Type: Number, Min: Range(0), Max: Range(1), Description: "share of attempts rejected by the simulated safety filter"},
		{Name: "output_format", Type: String, Enum: []string{"png", "jpg"}, Default: "png", Description: "encoding of the output"},
	}
}

// simModels are the simulator's profiles: no network, no key, real images.
// Each profile renders the reference differently so outputs visibly differ by
// model, with latency in the range of the hosted model it stands in for
// (scaled down so the quickstart finishes in seconds).
func simModels() []Model {
	mk := func(name, desc string, price float64, latency time.Duration) Model {
		return Model{
			Ref: "sim:" + name, Provider: "sim", Name: name, Description: desc,
			Params: simParams(), Output: OutputInline,
			Pricing: Pricing{Base: price}, Latency: latency,
			Limits: Limits{Key: "sim", Concurrency: 16},
			// Like the models they stand for: Ideogram and gpt-image-1
			// repaint a masked image, the others do not.
			Inpainting: name == "ideogram" || name == "gpt-image",
		}
	}
	return []Model{
		mk("kontext", "simulated FLUX.1 Kontext: warm, painterly edit of the reference", 0.04, 300*time.Millisecond),
		mk("ideogram", "simulated Ideogram Character: flat poster style", 0.10, 450*time.Millisecond),
		mk("seededit", "simulated SeedEdit 3: cool, sketch-like edit", 0.03, 350*time.Millisecond),
		mk("gpt-image", "simulated gpt-image-1: soft, high-key rendering", 0.04, 600*time.Millisecond),
		mk("flaky", "simulated unreliable model: 5xx, blank frames and safety rejections", 0.01, 200*time.Millisecond),
	}
}
