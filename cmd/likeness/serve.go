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
	"github.com/likeness-run/likeness/scheduler"
)

func (a *app) serveCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Live dashboard, JSON API and run artifacts over HTTP",
		Long: `serve shows recent runs at / and a live page per run at /runs/RUN: progress,
rate and ETA, cost against budget, a per-model table, the fleet limits' state,
queue depth, failures by class and a gallery that fills as outputs land. The
JSON API is at /api/runs and /api/runs/RUN/..., every run's report, images and
records at /files/runs/RUN/..., Prometheus metrics at /metrics.

Acting on runs (cancel, pause, resume, retry failed, raise the budget) needs
LIKENESS_DASHBOARD_TOKEN: log in with it in the browser, or send it as
"Authorization: Bearer TOKEN". Without it the dashboard is read-only and
serve refuses to listen beyond loopback.`,
		Example: `  likeness serve
  LIKENESS_DASHBOARD_TOKEN=$(openssl rand -hex 16) likeness serve --addr 0.0.0.0:8080
  curl -X POST -H "Authorization: Bearer $LIKENESS_DASHBOARD_TOKEN" localhost:8080/api/runs/RUN/pause`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := a.checkServeAddr("--addr", addr); err != nil {
				return err
			}
			in, err := a.connect(ctx, connectOpts{needStore: true})
			if err != nil {
				return err
			}
			defer in.Close()
			mux := http.NewServeMux()
			dash, closeDash, err := a.dashboard(in)
			if err != nil {
				return err
			}
			defer closeDash()
			mux.Handle("/", dash)
			defer a.mountMetrics(mux, in)()
			return a.listenAndServe(ctx, addr, mux)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on; beyond loopback only with LIKENESS_DASHBOARD_TOKEN set")
	return cmd
}

// checkServeAddr refuses to serve the dashboard beyond loopback without a
// token: anyone who can reach it could otherwise see every run.
func (a *app) checkServeAddr(flag, addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return inputErr(fmt.Errorf("%s %q: want HOST:PORT", flag, addr))
	}
	if a.getenv("LIKENESS_DASHBOARD_TOKEN") != "" || isLoopback(host) {
		return nil
	}
	where := host
	if where == "" {
		where = "every interface"
	}
	return inputErr(fmt.Errorf("%s %s listens on %s, beyond loopback: set LIKENESS_DASHBOARD_TOKEN first (or listen on 127.0.0.1)", flag, addr, where))
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dashboard builds the dashboard over the connected Redis and store, with
// the queue inspector and retry it acts through. The returned function
// closes the queue clients.
func (a *app) dashboard(in *infra) (*dashboard.Handler, func(), error) {
	lims, err := a.limits()
	if err != nil {
		return nil, nil, err
	}
	insp := asynq.NewInspector(in.redisOpt)
	q := asynq.NewClient(in.redisOpt)
	closeAll := func() {
		q.Close()
		insp.Close()
	}
	h, err := dashboard.New(dashboard.Config{
		Runs: in.runs, Store: in.blobs, Limiter: in.limiter, Limits: lims, Queues: insp,
		Retry: func(ctx context.Context, run string) (int, error) {
			return scheduler.Retry(ctx, q, insp, in.runs, in.blobs, run)
		},
		Token:  a.getenv("LIKENESS_DASHBOARD_TOKEN"),
		Logger: a.log,
	})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return h, closeAll, nil
}

// serveDashboard serves the dashboard on addr in the background, for `run
// --serve`. It returns the address it listens on and the function that
// stops it.
func (a *app) serveDashboard(ctx context.Context, in *infra, addr string) (net.Addr, func(), error) {
	dash, closeDash, err := a.dashboard(in)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		closeDash()
		return nil, nil, inputErr(fmt.Errorf("--serve %s: %w", addr, err))
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := a.serveListener(sctx, ln, dash); err != nil {
			a.log.Error("dashboard stopped", "addr", addr, "err", err)
		}
	}()
	return ln.Addr(), func() {
		cancel()
		<-done
		closeDash()
	}, nil
}

// listenAndServe serves h on addr until ctx is done, then shuts down.
func (a *app) listenAndServe(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return inputErr(fmt.Errorf("listen %s: %w", addr, err))
	}
	return a.serveListener(ctx, ln, h)
}

// serveListener serves h on ln until ctx is done, then shuts down.
func (a *app) serveListener(ctx context.Context, ln net.Listener, h http.Handler) error {
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
