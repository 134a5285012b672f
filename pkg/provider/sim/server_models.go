package sim

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// TagsProfile is the ModelBehavior.Profile of a text model such as
// intelligent-utilities/topic-tags: it takes "text" instead of "prompt" and
// answers an array of lower-case, hyphenated tag strings instead of an image.
const TagsProfile = "topic-tags"

// ModelBehavior is how one model served by a Server behaves.
type ModelBehavior struct {
	// Profile is the sim profile that renders the output ("kontext",
	// "ideogram", "seededit", "gpt-image", "flaky"), or TagsProfile.
	Profile string
	// Latency is the mean time from create to terminal status, before
	// ServerConfig.LatencyScale. An input "latency_ms" overrides it per request.
	Latency time.Duration
	// LatencyJitter spreads the latency uniformly over
	// Latency×[1-LatencyJitter, 1+LatencyJitter]; 0 means exact. At most 1.
	LatencyJitter float64
	// ServerErrorRate is the share of creates answered 503 (no prediction).
	ServerErrorRate float64
	// ModerationRate is the share of predictions that end "failed" with an
	// NSFW/sensitive error text.
	ModerationRate float64
	// BlankRate is the share of predictions that succeed with an all-black
	// output of the right size.
	BlankRate float64
	// SlowRate is the share of predictions whose latency is multiplied by 10.
	SlowRate float64
	// PriceUSD is the list price per output, for display; the server bills nothing.
	PriceUSD float64
	// ArrayOutput makes the output a one-element array of URIs (as
	// openai/gpt-image-1 answers) rather than a single URI string.
	ArrayOutput bool
	// AspectRatio is used when the input sets no aspect_ratio: "W:H" or
	// "match_input_image". Default (""): "1:1".
	AspectRatio string
	// RateLimit caps the model's accepted creates per ServerConfig.RateWindow,
	// with the same exact sliding window as ServerConfig.RateLimit, for
	// simulating providers that limit each model (or several providers in
	// one server). 0 means no limit of the model's own. A create over it is
	// answered 429 with "X-Sim-Throttle: model-rate".
	RateLimit int
	// Concurrency caps the model's predictions in flight; a create over it
	// is answered 429 with "X-Sim-Throttle: model-concurrency" and is not
	// accepted. 0 means no cap of the model's own.
	Concurrency int
	// ThrottleRate is the share of creates, among those within every limit,
	// answered 429 at random with Replicate's body, retry_after 1 and
	// "X-Sim-Throttle: random" (a spurious throttle, as a busy gateway
	// sends). They count in Stats.Throttled and ThrottledRandom, are not
	// accepted and use no rate budget. The draws come from a stream of
	// their own, so the fates of other creates do not change with it.
	ThrottleRate float64
}

// validate reports the first problem with b.
func (b ModelBehavior) validate() error {
	if b.Profile != TagsProfile {
		if _, err := Render(onePixel(), b.Profile, "", 0, map[string]any{"size": 64}); err != nil {
			return fmt.Errorf("profile %q: %w", b.Profile, err)
		}
	}
	if b.Latency < 0 {
		return fmt.Errorf("negative latency %s", b.Latency)
	}
	if !(b.LatencyJitter >= 0 && b.LatencyJitter <= 1) {
		return fmt.Errorf("latency jitter %v is outside [0, 1]", b.LatencyJitter)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"server error", b.ServerErrorRate}, {"moderation", b.ModerationRate}, {"blank", b.BlankRate}, {"slow", b.SlowRate}, {"throttle", b.ThrottleRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return fmt.Errorf("%s rate %v is outside [0, 1]", r.name, r.v)
		}
	}
	if b.RateLimit < 0 {
		return fmt.Errorf("negative rate limit %d", b.RateLimit)
	}
	if b.Concurrency < 0 {
		return fmt.Errorf("negative concurrency %d", b.Concurrency)
	}
	if b.AspectRatio != "" {
		if _, err := parseAspect(b.AspectRatio); err != nil {
			return err
		}
	}
	if math.IsNaN(b.PriceUSD) || b.PriceUSD < 0 {
		return fmt.Errorf("price %v is not a non-negative number", b.PriceUSD)
	}
	return nil
}

// DefaultModels returns the models a Server serves when ServerConfig.Models
// is empty, as a fresh map the caller may change:
//
//   - every Replicate-hosted model of provider.DefaultRegistry() (refs
//     "replicate:owner/name"), under "owner/name", rendered by the sim
//     profile that fits its name (kontext and other FLUX models: "kontext";
//     ideogram: "ideogram"; seededit and other ByteDance models: "seededit";
//     gpt-image: "gpt-image"; runway gen4: "kontext"; text models:
//     TagsProfile), with the registry's latency, price, output shape and
//     default aspect ratio, 30% latency jitter and no failures;
//   - "likeness/sim-<profile>" for every sim profile in the registry, with
//     the catalog's latency and price; "likeness/sim-flaky" fails like the
//     in-process flaky profile (15% 5xx, 10% blank, 5% moderated).
func DefaultModels() map[string]ModelBehavior {
	out := make(map[string]ModelBehavior)
	for _, m := range provider.DefaultRegistry().Models() {
		b := ModelBehavior{Latency: m.Latency, LatencyJitter: 0.3, PriceUSD: m.Pricing.Base}
		switch {
		case strings.HasPrefix(m.Ref, "replicate:"):
			name, _, _ := strings.Cut(strings.TrimPrefix(m.Ref, "replicate:"), ":")
			if owner, model, ok := strings.Cut(name, "/"); !ok || owner == "" || model == "" || strings.Contains(model, "/") {
				continue
			}
			b.Profile = profileFor(name, m.Output)
			b.ArrayOutput = m.Output == provider.OutputURIArray
			if p, ok := m.Param("aspect_ratio"); ok {
				if s, ok := p.Default.(string); ok {
					if _, err := parseAspect(s); err == nil {
						b.AspectRatio = s
					}
				}
			}
			out[name] = b
		case m.Provider == ProviderName:
			b.Profile = m.Name
			if m.Name == "flaky" {
				b.ServerErrorRate, b.BlankRate, b.ModerationRate = 0.15, 0.10, 0.05
			}
			out["likeness/sim-"+m.Name] = b
		}
	}
	return out
}

// profileFor picks the sim profile that stands in for a Replicate model.
func profileFor(name string, output provider.OutputKind) string {
	n := strings.ToLower(name)
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(n, s) {
				return true
			}
		}
		return false
	}
	switch {
	case output == provider.OutputText:
		return TagsProfile
	case has("ideogram"):
		return "ideogram"
	case has("seededit", "seedream", "bytedance"):
		return "seededit"
	case has("gpt-image", "openai", "dall-e"):
		return "gpt-image"
	default: // FLUX Kontext, Runway gen4 and anything else that edits a reference
		return "kontext"
	}
}
