package sim_test

import (
	"fmt"

	"github.com/likeness-run/likeness/pkg/provider/sim"
)

// A models file for `likeness sim-provider --config`: a registry model with
// limits of its own and failures, beside a model the registry lacks.
func ExampleParseModels() {
	models, err := sim.ParseModels([]byte(`
models:
  black-forest-labs/flux-kontext-pro:
    latency: 800ms
    rate_limit: 300
    concurrency: 6
    throttle_rate: 0.03
  acme/poster:
    profile: ideogram
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	k := models["black-forest-labs/flux-kontext-pro"]
	fmt.Println(k.Profile, k.Latency, k.RateLimit, k.Concurrency, k.ThrottleRate)
	fmt.Println(models["acme/poster"].Profile)
	// Output:
	// kontext 800ms 300 6 0.03
	// ideogram
}
