package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/likeness-run/likeness/pkg/dashboard"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

func (a *app) serveCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Web dashboard, JSON API and run artifacts over HTTP",
		Long: `serve shows recent runs and their progress at /, a JSON API at /api/runs and
/api/runs/RUN, every run's report, images and manifest at /files/runs/RUN/...,
and Prometheus metrics at /metrics.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in, err := a.connect(ctx, connectOpts{needStore: true})
			if err != nil {
				return err
			}
			defer in.Close()
			mux := http.NewServeMux()
			mux.Handle("/", dashboard.New(dashboard.Config{Runs: in.runs, Store: in.blobs, Logger: a.log}))
			defer a.mountMetrics(mux, in)()
			return a.listenAndServe(ctx, addr, mux)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on")
	return cmd
}

// listenAndServe serves h on addr until ctx is done, then shuts down.
func (a *app) listenAndServe(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return inputErr(fmt.Errorf("listen %s: %w", addr, err))
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	a.log.Info("serving", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// mountMetrics serves the Prometheus metrics at /metrics, with the queue
// depth and latency of every queue read from asynq. It returns the function
// that stops reading the queues.
func (a *app) mountMetrics(mux *http.ServeMux, in *infra) func() {
	mux.Handle("GET /metrics", a.tel.MetricsHandler())
	insp := asynq.NewInspector(in.redisOpt)
	stop := a.tel.Metrics().RegisterQueueStats(telemetry.InspectorQueueStats(insp))
	return func() {
		stop()
		insp.Close()
	}
}
