package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/likeness-run/likeness/bench"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

func (a *app) benchCmd() *cobra.Command {
	var (
		cfg        bench.Config
		tracing    bool
		cpuProfile string
	)
	cmd := &cobra.Command{
		Use:   "bench SCENARIO",
		Short: "Benchmark against real Redis/MinIO and the simulator; ends with one JSON line",
		Long: `bench runs one benchmark scenario and prints one JSON line on stdout
(progress goes to stderr). It needs a real Redis and object store
(LIKENESS_REDIS_URL and LIKENESS_S3_*; scripts/bench.sh starts throwaway
ones) and starts its own ` + "`likeness sim-provider`" + ` and ` + "`likeness worker`" + `
processes from this binary, on loopback, with a fake Replicate token.

Scenarios (docs/benchmarks.md has the measured numbers):

  limits    4 workers against one provider limited to 600 creates/min and
            8 in flight; the simulator counts. JSON: achieved_ratio (accepted
            creates/min between the first and last accept ÷ the limit; target
            >= 0.97), over_limit_windows (1-minute windows over the limit;
            target 0), max_in_flight (target <= concurrency_cap).
  makespan  2,000 tasks over four simulated providers with their own rate
            limits, caps and latencies, plus 5% 5xx, 3% 429 and 2% blank
            outputs. JSON: makespan_s, lower_bound_s (the least time the
            limits allow), ratio (target <= 1.10), succeeded (target: all).
  overhead  20,000 tasks of a zero-latency in-process simulated model through
            the whole pipeline beside 20,000 no-op asynq tasks on the same
            Redis. JSON: tasks_per_s, raw_asynq_tasks_per_s, ratio,
            p99_overhead_ms (p99 handler time of the pipeline minus the
            no-op's).
  chaos     1,000 tasks over five simulated Replicate models (600/min, 40 in
            flight, 2.5 s, 5% 503, 3% 429, 2% blank, 1% moderated) on three
            workers, while a worker is SIGKILLed every 9 s, Redis is killed at
            20 s and restarted on its AOF 3 s later, MinIO is stopped from 45 s
            to 65 s and the provider answers 503 from 75 s to 105 s. It runs
            its own redis-server and MinIO (--redis-server, --minio) and needs
            no LIKENESS_REDIS_URL. JSON: succeeded (target: all),
            duplicate_records (0), missing_outputs (0), paid_predictions_per_task
            (<= 1.04), makespan_s (<= bound_s + outage_s + 30), worker_kills.
            Not part of scripts/bench.sh all.
  sentinel  limits on Redis behind Sentinel (a redis-sentinel:// URL), the
            master failed over when half the tasks are done. JSON: the
            limits fields (target achieved_ratio >= 0.95, over_limit_windows
            0), failover_s, tasks and succeeded (target: all). Not part of
            scripts/bench.sh all.
  scale     100,000 tasks (50 characters × 100 prompts × 4 simulated
            models × 5 variants) submitted through the producer; the bench
            itself finishes every task (a 64 px output and the record
            stored, the task counted by run state's Finish as a worker does,
            which pushes the record for folding; no provider is called) and
            serves the run:fold tasks with an in-process worker's handler,
            then a likeness worker process runs the fan-in. JSON: submit_s (target <= 8), redis_bytes_per_queued_task
            (<= 1000) and redis_bytes_per_finished_task (<= 200) from Redis
            used_memory, finalize_s (<= 30), finalize_peak_rss_mb (the
            worker's ru_maxrss; <= 300), largest_report_page_kb (<= 2048).
            Not part of scripts/bench.sh all.

Each scenario flushes Redis database --redis-db (limits), +1 (makespan),
+2 (overhead) or +3 (scale) and writes to a new bucket named after
LIKENESS_S3_BUCKET.

Exit status: 0 when the scenario met its targets, 1 when it ran but missed
one (the JSON line is printed either way), 2 for bad input or missing
configuration, 3 when Redis or the object store do not answer.`,
		Example: `  scripts/bench.sh limits          # starts Redis and MinIO, then runs this
  LIKENESS_REDIS_URL=redis://127.0.0.1:6379 LIKENESS_S3_ENDPOINT=127.0.0.1:9000 \
  LIKENESS_S3_ACCESS_KEY=... LIKENESS_S3_SECRET_KEY=... likeness bench makespan`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: append(bench.Scenarios(), bench.ScenarioSentinel, bench.ScenarioScale),
		RunE: func(cmd *cobra.Command, args []string) error {
			exe, err := os.Executable()
			if err != nil {
				return inputErr(fmt.Errorf("find this executable: %w", err))
			}
			cfg.Executable = exe
			cfg.RedisURL = a.getenv("LIKENESS_REDIS_URL")
			cfg.S3 = bench.S3Config{
				Endpoint: a.getenv("LIKENESS_S3_ENDPOINT"), AccessKey: a.getenv("LIKENESS_S3_ACCESS_KEY"),
				SecretKey: a.getenv("LIKENESS_S3_SECRET_KEY"), Bucket: a.getenv("LIKENESS_S3_BUCKET"),
				Region: a.getenv("LIKENESS_S3_REGION"),
			}
			if v := a.getenv("LIKENESS_S3_SECURE"); v != "" {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return inputErr(fmt.Errorf("LIKENESS_S3_SECURE=%q: want true or false", v))
				}
				cfg.S3.Secure = b
			}
			if cfg.MinIO == "" {
				cfg.MinIO = cachedMinIO(a.getenv)
			}
			if args[0] != bench.ScenarioChaos && (cfg.RedisURL == "" || cfg.S3.Endpoint == "") {
				return inputErr(errors.New("bench needs a real Redis and object store: set LIKENESS_REDIS_URL and LIKENESS_S3_ENDPOINT (with LIKENESS_S3_ACCESS_KEY and LIKENESS_S3_SECRET_KEY), or run scripts/bench.sh"))
			}
			cfg.Progress = a.stderr
			cfg.Logger = a.log
			if tracing {
				// Every span is created, batched and exported, to an
				// exporter that drops it: the cost of tracing without a
				// collector's network in the measurement.
				tel, err := telemetry.Setup(cmd.Context(), telemetry.Config{Logger: a.log, Getenv: func(string) string { return "" },
					SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewBatchSpanProcessor(discardSpans{})}})
				if err != nil {
					return err
				}
				defer tel.Shutdown(context.WithoutCancel(cmd.Context()))
				cfg.Telemetry = tel
				fmt.Fprintln(a.stderr, "bench: tracing on (every span batched and exported to a discarding exporter)")
			}
			if cpuProfile != "" {
				stop, err := startCPUProfile(cpuProfile)
				if err != nil {
					return inputErr(err)
				}
				defer stop()
			}
			res, err := bench.Run(cmd.Context(), cfg, args[0])
			switch {
			case errors.Is(err, bench.ErrConfig):
				return inputErr(err)
			case errors.Is(err, bench.ErrInfra):
				return infraErr(err)
			case err != nil:
				return &exitError{code: exitFailures, err: err}
			}
			line, err := json.Marshal(res)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, string(line))
			if err := res.Check(); err != nil {
				return &exitError{code: exitFailures, err: fmt.Errorf("bench %s missed its targets:\n%s", args[0], strings.TrimSpace(err.Error()))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Workers, "workers", 0, "worker processes (limits, makespan: default 4; chaos: 3)")
	f.IntVar(&cfg.Tasks, "tasks", 0, "tasks (default: limits 1200, makespan 2000, overhead 20000, chaos 1000, scale 100000)")
	f.IntVar(&cfg.RedisDB, "redis-db", 10, "first of the Redis databases the scenarios flush and use (limits +0, makespan +1, overhead +2, scale +3)")
	f.StringVar(&cfg.Dir, "dir", "", "keep the scenario's files (spec, limits, process logs) under this directory")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the bench process to this file (go tool pprof FILE); the overhead scenario's pipeline runs in it")
	f.StringVar(&cfg.RedisServer, "redis-server", "redis-server", "chaos: the redis-server executable it starts, kills and restarts")
	f.StringVar(&cfg.MinIO, "minio", "", "chaos: the minio executable it starts, stops and restarts (default: the one scripts/bench.sh builds into the cache, else minio on PATH)")
	f.Float64Var(&cfg.TimeScale, "time-scale", 1, "chaos: multiply every fault time, the kill interval, the image latency and the makespan slack (0.1: ten times faster)")
	f.DurationVar(&cfg.Timeout, "timeout", 0, "chaos: stop waiting for the run after this long and report (default: twice the makespan target plus a minute)")
	f.BoolVar(&tracing, "tracing", false, "overhead: work half the tasks traced (runs untraced, traced, traced, untraced; spans exported to a discarding exporter) and report traced_tasks_per_s and tracing_ratio, target >= 0.95")
	return cmd
}

// cachedMinIO is the MinIO binary scripts/lib.sh builds
// (${LIKENESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/likeness}/bin/minio)
// when it exists, else "minio" to be found on PATH.
func cachedMinIO(getenv func(string) string) string {
	dir := getenv("LIKENESS_CACHE")
	if dir == "" {
		base := getenv("XDG_CACHE_HOME")
		if base == "" {
			if home := getenv("HOME"); home != "" {
				base = filepath.Join(home, ".cache")
			}
		}
		if base != "" {
			dir = filepath.Join(base, "likeness")
		}
	}
	if dir != "" {
		bin := filepath.Join(dir, "bin", "minio")
		if fi, err := os.Stat(bin); err == nil && !fi.IsDir() {
			return bin
		}
	}
	return "minio"
}

// discardSpans is a span exporter that drops what it is given.
type discardSpans struct{}

func (discardSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardSpans) Shutdown(context.Context) error                             { return nil }

// startCPUProfile profiles this process until the returned stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
