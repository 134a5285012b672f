package sim

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ParseModels reads the models file of `likeness sim-provider --config`,
// YAML or JSON, into ServerConfig.Models:
//
//	include_defaults: false   # also serve DefaultModels() (default false)
//	models:
//	  black-forest-labs/flux-kontext-pro:
//	    latency: 800ms          # Go duration
//	    latency_jitter: 0.3
//	    server_error_rate: 0.05
//	    blank_rate: 0.02
//	    throttle_rate: 0.03
//	    rate_limit: 300         # creates per ServerConfig.RateWindow
//	    concurrency: 6
//	  acme/poster:
//	    profile: ideogram
//
// Keys are "owner/name"; the fields are ModelBehavior's in snake_case
// (profile, latency, latency_jitter, server_error_rate, moderation_rate,
// blank_rate, slow_rate, throttle_rate, rate_limit, concurrency, price_usd,
// array_output, aspect_ratio). A model DefaultModels() knows starts from
// its default behaviour (profile, latency, output shape), so a file may set
// only what differs; any other model needs a profile. Unknown fields are
// errors. Behaviours are validated by NewServer.
func ParseModels(data []byte) (map[string]ModelBehavior, error) {
	type entry struct {
		Profile         *string  `yaml:"profile"`
		Latency         *string  `yaml:"latency"`
		LatencyJitter   *float64 `yaml:"latency_jitter"`
		ServerErrorRate *float64 `yaml:"server_error_rate"`
		ModerationRate  *float64 `yaml:"moderation_rate"`
		BlankRate       *float64 `yaml:"blank_rate"`
		SlowRate        *float64 `yaml:"slow_rate"`
		ThrottleRate    *float64 `yaml:"throttle_rate"`
		RateLimit       *int     `yaml:"rate_limit"`
		Concurrency     *int     `yaml:"concurrency"`
		PriceUSD        *float64 `yaml:"price_usd"`
		ArrayOutput     *bool    `yaml:"array_output"`
		AspectRatio     *string  `yaml:"aspect_ratio"`
	}
	var doc struct {
		IncludeDefaults bool              `yaml:"include_defaults"`
		Models          map[string]*entry `yaml:"models"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		return nil, fmt.Errorf("sim models file: %w", err)
	}
	if len(doc.Models) == 0 && !doc.IncludeDefaults {
		return nil, fmt.Errorf("sim models file: no models (set models, or include_defaults: true)")
	}
	defaults := DefaultModels()
	out := make(map[string]ModelBehavior, len(doc.Models))
	if doc.IncludeDefaults {
		for name, b := range defaults {
			out[name] = b
		}
	}
	names := make([]string, 0, len(doc.Models))
	for name := range doc.Models {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		e := doc.Models[name]
		if e == nil {
			e = &entry{}
		}
		b, known := defaults[name]
		if !known && e.Profile == nil {
			return nil, fmt.Errorf("sim models file: %s: profile is required for a model the registry does not know", name)
		}
		set := func(dst *float64, v *float64) {
			if v != nil {
				*dst = *v
			}
		}
		if e.Profile != nil {
			b.Profile = strings.TrimSpace(*e.Profile)
		}
		if e.Latency != nil {
			d, err := time.ParseDuration(strings.TrimSpace(*e.Latency))
			if err != nil {
				return nil, fmt.Errorf("sim models file: %s: latency %q is not a duration such as 800ms or 2s", name, *e.Latency)
			}
			b.Latency = d
		}
		set(&b.LatencyJitter, e.LatencyJitter)
		set(&b.ServerErrorRate, e.ServerErrorRate)
		set(&b.ModerationRate, e.ModerationRate)
		set(&b.BlankRate, e.BlankRate)
		set(&b.SlowRate, e.SlowRate)
		set(&b.ThrottleRate, e.ThrottleRate)
		set(&b.PriceUSD, e.PriceUSD)
		if e.RateLimit != nil {
			b.RateLimit = *e.RateLimit
		}
		if e.Concurrency != nil {
			b.Concurrency = *e.Concurrency
		}
		if e.ArrayOutput != nil {
			b.ArrayOutput = *e.ArrayOutput
		}
		if e.AspectRatio != nil {
			b.AspectRatio = *e.AspectRatio
		}
		for _, f := range []float64{b.LatencyJitter, b.ServerErrorRate, b.ModerationRate, b.BlankRate, b.SlowRate, b.ThrottleRate, b.PriceUSD} {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("sim models file: %s: rates and prices must be finite numbers", name)
			}
		}
		if err := b.validate(); err != nil {
			return nil, fmt.Errorf("sim models file: %s: %w", name, err)
		}
		out[name] = b
	}
	return out, nil
}
