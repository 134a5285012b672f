package provider

import "time"

// arkModels are the models served by the ark adapter (pkg/provider/ark,
// BytePlus ModelArk / Volcengine Ark).
//
// SeedEdit 3.0 edits the character reference itself, guided by the prompt.
// Its one user parameter, guidance_scale, has the same name and range as on
// Replicate's bytedance/seededit-3.0; prompt, image and seed are supplied by
// likeness. The adapter asks for base64 output by default, so nothing can
// expire between generation and download.
//
// Limits: Ark enforces a per-account images-per-minute quota whose default
// value is not published for SeedEdit (shared/providers.md section 6). The
// defaults here are deliberately conservative, 60 requests a minute and 10
// in flight (at ~13 s per image, 10 in flight is ~46 images a minute); raise
// them to the account's real quota.
func arkModels() []Model {
	return []Model{{
		Ref:         "ark:seededit-3-0-i2i-250628",
		Provider:    "ark",
		Name:        "seededit-3-0-i2i-250628",
		Description: "ByteDance SeedEdit 3.0 image-to-image edit on BytePlus ModelArk",
		Params: []Param{
			{Name: "guidance_scale", Type: Number, Min: Range(1), Max: Range(10), Default: 5.5,
				Description: "how closely the edit follows the prompt; higher is more literal"},
		},
		Output:  OutputBase64,
		Pricing: Pricing{Base: 0.03},
		Latency: 13 * time.Second,
		Limits:  Limits{Key: "ark", RequestsPerMinute: 60, Concurrency: 10},
	}}
}
