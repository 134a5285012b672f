package scheduler

import (
	"time"

	"github.com/likeness-run/likeness/pkg/spec"
)

// ModelEstimate is one model's share of an estimate.
type ModelEstimate struct {
	Model    string
	Ref      string
	Tasks    int
	CostUSD  float64
	Duration time.Duration
}

// Estimate is what a spec will cost and take before anything is spent.
type Estimate struct {
	Tasks   int
	CostUSD float64
	// Duration is the wall time if every model runs at its default
	// concurrency limit in parallel with the others, without failures.
	Duration time.Duration
	Models   []ModelEstimate
}

// EstimateSpec prices a spec from the registry: list price per output times
// outputs, and typical latency divided by the provider's concurrency.
func EstimateSpec(s *spec.Spec) Estimate {
	var e Estimate
	perModel := len(s.Characters) * len(s.Prompts) * s.Variants
	for _, m := range s.Models {
		me := ModelEstimate{Model: m.ID, Ref: m.Ref, Tasks: perModel}
		me.CostUSD = float64(perModel) * m.Info.Pricing.For(m.Params)
		conc := max(m.Info.Limits.Concurrency, 1)
		waves := (perModel + conc - 1) / conc
		me.Duration = time.Duration(waves) * m.Info.Latency
		e.Tasks += me.Tasks
		e.CostUSD += me.CostUSD
		e.Duration = max(e.Duration, me.Duration)
		e.Models = append(e.Models, me)
	}
	return e
}
