package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/likeness-run/likeness/pkg/provider/sim"
)

func (a *app) simProviderCmd() *cobra.Command {
	var (
		listen     string
		configFile string
		cfg        sim.ServerConfig
	)
	cmd := &cobra.Command{
		Use:   "sim-provider",
		Short: "Serve the simulator over Replicate's HTTP API (demos, load tests, benchmarks)",
		Long: `sim-provider serves the image simulator behind Replicate's HTTP API until
SIGINT or SIGTERM, so the real Replicate adapter can run against it: point a
worker at it with

  REPLICATE_API_TOKEN=<--token, or anything without one>
  LIKENESS_REPLICATE_BASE_URL=http://ADDR/v1

Without --config it serves every Replicate model of the registry (as
owner/name) and likeness/sim-<profile>, with the registry's latencies and no
failures. Outputs are real images rendered from the reference.

--config FILE (YAML or JSON) replaces those models with your own:

  include_defaults: false      # true: also serve the default models
  models:
    black-forest-labs/flux-kontext-pro:   # a registry model keeps its defaults
      latency: 800ms           # mean time to a terminal status
      latency_jitter: 0.3      # uniform spread, share of latency (0..1)
      server_error_rate: 0.05  # share of creates answered 503
      moderation_rate: 0       # share ending "failed" with an NSFW error
      blank_rate: 0.02         # share succeeding with an all-black image
      slow_rate: 0             # share taking 10x latency
      throttle_rate: 0.03      # share answered 429 at random (retry_after 1)
      rate_limit: 300          # this model's creates per --rate-window
      concurrency: 6           # this model's predictions in flight
      # also: profile, price_usd, array_output, aspect_ratio
    acme/poster:
      profile: ideogram        # required for a model the registry lacks

Limits answer 429 with Replicate's body and retry_after; --rate-limit and
--concurrency apply to all models together, a model's rate_limit and
concurrency to that model alone. GET /stats reports every counter (per
model under "models"), with the largest number of accepted creates in any
window and the windows over a limit (?window=1m&limit=600), and
paid_predictions: the predictions created, which a provider bills whatever
their end (a create refused with 429, 4xx or 503 is not paid); POST
/stats/reset zeroes them.

POST /admin/outage?for=30s starts an outage: for 30 s every request under
/v1/ and /files/ is answered 503 (nothing created, nothing paid); for=0
ends it, GET shows it. /stats, /healthz and /admin need no token.

Input images given by URL are fetched only from the simulator itself (its
/v1/files uploads and its outputs); data: URIs work. Any other URL is
refused 422, as Replicate refuses an input it cannot fetch: a hosted
provider cannot reach a loopback, private (RFC 1918, unique local) or
link-local host such as a bucket inside your network, and the simulator
never reaches the internet. It listens on loopback unless --listen says
otherwise.`,
		Example: `  likeness sim-provider --listen 127.0.0.1:8089 --rate-limit 600 --concurrency 100
  likeness sim-provider --config sim.yaml --latency-scale 0.1 --output-size 256`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configFile != "" {
				data, err := os.ReadFile(configFile)
				if err != nil {
					return inputErr(fmt.Errorf("--config: %w", err))
				}
				models, err := sim.ParseModels(data)
				if err != nil {
					return inputErr(fmt.Errorf("--config %s: %w", configFile, err))
				}
				cfg.Models = models
			}
			if host, _, err := net.SplitHostPort(listen); err != nil {
				return inputErr(fmt.Errorf("--listen %q: want HOST:PORT", listen))
			} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				a.log.Warn("sim-provider is listening beyond loopback", "addr", listen)
			}
			cfg.Logger = a.log
			srv, err := sim.NewServer(cfg)
			if err != nil {
				return inputErr(err)
			}
			return a.listenAndServe(cmd.Context(), listen, srv.Handler())
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8089", "address to listen on (HOST:PORT; port 0 picks a free one, logged as addr)")
	f.StringVar(&configFile, "config", "", "YAML or JSON file of models and their behaviour (see above)")
	f.IntVar(&cfg.RateLimit, "rate-limit", 0, "creates accepted per --rate-window across all models; 0 = unlimited")
	f.DurationVar(&cfg.RateWindow, "rate-window", time.Minute, "window of --rate-limit and of every model's rate_limit")
	f.IntVar(&cfg.Concurrency, "concurrency", 0, "predictions in flight across all models; 0 = unlimited")
	f.StringVar(&cfg.Token, "token", "", "bearer token every /v1 request must carry; empty accepts any")
	f.Float64Var(&cfg.LatencyScale, "latency-scale", 1, "multiplies every latency (0.1 = ten times faster)")
	f.Int64Var(&cfg.Seed, "seed", 0, "seed of the draws (latency, failures, throttles), for reproducible runs")
	f.IntVar(&cfg.OutputSize, "output-size", sim.DefaultSize, "long side of outputs in pixels when the input sets no size (64..2048)")
	f.BoolVar(&cfg.SyncOutputURL, "sync-output-url", false, `answer "Prefer: wait" creates with an output URL instead of a data: URI`)
	return cmd
}
