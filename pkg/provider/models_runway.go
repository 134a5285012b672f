package provider

import "time"

// runwayModels are the models served by the runway adapter
// (pkg/provider/runway): Gen-4 Image and Gen-4 Image Turbo on Runway's own
// API. Parameter names and values are those of the Replicate-hosted
// runwayml/gen4-image(-turbo) models; the adapter maps aspect_ratio and
// resolution to Runway's ratio strings ("1920:1080").
//
// Limits: Runway caps concurrency per model and per tier (tier 1, the
// default, allows 1-2; tier 2: 3, tier 3: 5, tier 4: 10, tier 5: 20) and
// queues excess tasks as THROTTLED instead of rejecting them, which burns
// the task's deadline. The defaults assume tier 1; raise Concurrency to the
// account's tier (per model) in the fleet's limit overrides.
func runwayModels() []Model {
	params := func() []Param {
		return []Param{
			{
				Name: "aspect_ratio", Type: String, Default: "16:9",
				Enum:        []string{"16:9", "9:16", "4:3", "3:4", "1:1", "21:9"},
				Description: "output aspect ratio",
			},
			{
				Name: "resolution", Type: String, Enum: []string{"720p", "1080p"}, Default: "1080p",
				Description: "output resolution (Gen-4 Image: price tier)",
			},
		}
	}
	return []Model{
		{
			Ref: "runway:gen4_image", Provider: "runway", Name: "gen4_image",
			Description: "Runway Gen-4 Image: the character as @tag from its reference",
			Params:      params(), Output: OutputURIArray,
			Pricing: Pricing{Base: 0.08, ByParam: "resolution", Table: map[string]float64{"720p": 0.05, "1080p": 0.08}},
			Latency: 24 * time.Second,
			Limits:  Limits{Key: "runway:gen4_image", Concurrency: 2},
		},
		{
			Ref: "runway:gen4_image_turbo", Provider: "runway", Name: "gen4_image_turbo",
			Description: "Runway Gen-4 Image Turbo: faster and cheaper, needs the reference",
			Params:      params(), Output: OutputURIArray,
			Pricing: Pricing{Base: 0.02}, Latency: 15 * time.Second,
			Limits: Limits{Key: "runway:gen4_image_turbo", Concurrency: 2},
		},
	}
}
