// Package bench runs likeness's benchmarks (`likeness bench SCENARIO`)
// against the real parts: a real Redis and MinIO, real `likeness worker`
// processes, and the Replicate-protocol simulator (`likeness sim-provider`)
// standing in for the providers. Every scenario prints progress and ends
// with one JSON line, as `river bench` does; docs/benchmarks.md records the
// numbers measured and what they mean.
//
// Scenarios:
//
//   - limits: can a fleet of workers use a provider's rate limit without
//     ever exceeding it, and stay within its concurrency cap? Counted by
//     the simulator, which sees every create.
//   - makespan: four providers with different limits, latencies and
//     failures (5xx, random 429s, blank images); how close does a mixed
//     run come to the least time the providers' limits allow?
//   - overhead: what does the pipeline (limits, checks, storage, records)
//     cost per task compared with a bare asynq handler?
//   - chaos: does a run survive its infrastructure failing under it
//     (workers SIGKILLed, Redis killed and restarted from its append-only
//     file, MinIO stopped, the provider down) with every task done once,
//     every output stored, and no prediction paid twice? It runs its own
//     Redis and MinIO, which it kills and restarts.
//   - sentinel: limits on Redis behind Sentinel, failed over midway
//     (sentinel.go); not part of `bench all`, it needs a Sentinel set.
//   - scale: does a 100,000-task run stay light? Submit time, Redis bytes
//     per queued and per finished task, and the fan-in's time, peak RSS
//     and largest report page (scale.go); not part of `bench all`.
//
// Each scenario flushes a Redis database of its own (Config.RedisDB plus
// 0, 1, 2, scale 3; chaos: its own server), writes to a bucket of its own (a new one
// per run), and stops every process it started however it ends.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/telemetry"
)

// Scenario names.
const (
	ScenarioLimits   = "limits"
	ScenarioMakespan = "makespan"
	ScenarioOverhead = "overhead"
	ScenarioChaos    = "chaos"
)

// Scenarios lists the scenarios in the order `bench all` runs them, then
// chaos, which `bench all` leaves out (it brings its own Redis and MinIO
// and takes minutes of faults).
func Scenarios() []string {
	return []string{ScenarioLimits, ScenarioMakespan, ScenarioOverhead, ScenarioChaos}
}

// ErrConfig marks a bad Config or scenario name: nothing was run.
var ErrConfig = errors.New("bench: bad configuration")

// ErrInfra marks Redis or the object store not answering.
var ErrInfra = errors.New("bench: infrastructure unreachable")

// S3Config says how to reach the object store.
type S3Config struct {
	Endpoint  string // host:port; required
	AccessKey string
	SecretKey string
	// Bucket is the prefix of the bucket each run creates:
	// <Bucket>-bench-<scenario>-<time>. Default "likeness".
	Bucket string
	Secure bool
	Region string
}

// Config configures the benchmarks. Zero fields take the documented
// defaults; RedisURL and S3.Endpoint are required (except by chaos, which
// starts its own), and Executable for the scenarios that start processes
// (limits, makespan, chaos).
type Config struct {
	// Executable is the likeness binary started as `likeness worker` and
	// `likeness sim-provider` subprocesses (the CLI passes its own).
	Executable string
	// RedisURL is the Redis to run against (LIKENESS_REDIS_URL). Its
	// database number is replaced by the scenario's.
	RedisURL string
	// RedisDB is the first of the databases the scenarios flush and use:
	// limits RedisDB, makespan RedisDB+1, overhead RedisDB+2, scale
	// RedisDB+3.
	// Default 10; it must leave room below 16 (Redis's default count)
	// unless the server has more.
	RedisDB int
	// S3 is the object store (LIKENESS_S3_*).
	S3 S3Config
	// Workers overrides the scenario's number of worker processes (limits
	// and makespan: 4, chaos: 3). Overhead always runs one in-process
	// worker.
	Workers int
	// Tasks overrides the scenario's number of tasks (limits 1,200,
	// makespan 2,000, overhead 20,000, chaos 1,000, scale 100,000). It is rounded up to
	// what the spec's fan-out can express.
	Tasks int
	// Env is the environment the subprocesses start from; provider keys
	// and LIKENESS_* variables are removed from it and the scenario's own
	// set. Default os.Environ().
	Env []string
	// Dir holds the scenario's files (spec, references, limits file,
	// subprocess logs). Default: a new temporary directory, removed at the
	// end unless the scenario failed.
	Dir string
	// Progress receives progress lines. Default io.Discard.
	Progress io.Writer
	// Logger receives the in-process worker's logs (overhead). Default:
	// warnings and errors to Progress.
	Logger *slog.Logger
	// Telemetry, when set, traces the overhead scenario's pipeline (submit
	// and every task), to measure what tracing costs. Nil: no tracing.
	Telemetry *telemetry.Telemetry

	// RedisServer is the redis-server executable the chaos scenario starts,
	// kills and restarts (a path, or a name looked up on PATH). Default
	// "redis-server".
	RedisServer string
	// MinIO is the minio executable the chaos scenario starts, stops and
	// restarts. Default "minio" (the CLI passes the binary scripts/lib.sh
	// builds into the cache when it exists).
	MinIO string
	// TimeScale multiplies every time of the chaos scenario: when each
	// fault starts and how long it lasts, the worker kill interval, the
	// image latency and the makespan slack (not the rate limit). Default 1;
	// the smoke test uses 0.1.
	TimeScale float64
	// Timeout bounds how long the chaos scenario waits for its run before
	// it stops waiting and reports what it has (missing its targets).
	// Default: twice the makespan target, plus a minute.
	Timeout time.Duration
}

func (c Config) withDefaults(scenario string) (Config, error) {
	if c.RedisURL == "" && scenario != ScenarioChaos {
		return c, fmt.Errorf("%w: the Redis URL is required (LIKENESS_REDIS_URL)", ErrConfig)
	}
	if c.S3.Endpoint == "" && scenario != ScenarioChaos {
		return c, fmt.Errorf("%w: the object store endpoint is required (LIKENESS_S3_ENDPOINT)", ErrConfig)
	}
	if c.RedisServer == "" {
		c.RedisServer = "redis-server"
	}
	if c.MinIO == "" {
		c.MinIO = "minio"
	}
	if c.TimeScale < 0 || c.Timeout < 0 {
		return c, fmt.Errorf("%w: TimeScale and Timeout must not be negative", ErrConfig)
	}
	if c.TimeScale == 0 {
		c.TimeScale = 1
	}
	if c.RedisDB == 0 {
		c.RedisDB = 10
	}
	if c.RedisDB < 0 {
		return c, fmt.Errorf("%w: RedisDB %d is negative", ErrConfig, c.RedisDB)
	}
	if c.Workers < 0 || c.Tasks < 0 {
		return c, fmt.Errorf("%w: Workers and Tasks must not be negative", ErrConfig)
	}
	if c.S3.Bucket == "" {
		c.S3.Bucket = "likeness"
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(c.Progress, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return c, nil
}

// Result is one scenario's JSON line.
type Result interface {
	// Check reports the scenario's targets the result misses; nil when it
	// meets them all.
	Check() error
}

// Run runs one scenario and returns its result. A result is returned
// whenever the scenario ran to the end, whether or not it met its targets
// (see Result.Check). Errors wrap ErrConfig for bad configuration and
// ErrInfra when Redis or the object store do not answer.
func Run(ctx context.Context, cfg Config, scenario string) (Result, error) {
	cfg, err := cfg.withDefaults(scenario)
	if err != nil {
		return nil, err
	}
	defer reportSteal(cfg, scenario)()
	if scenario == ScenarioChaos {
		if cfg.Executable == "" {
			return nil, fmt.Errorf("%w: scenario %s starts processes and needs the likeness executable", ErrConfig, scenario)
		}
		return runChaos(ctx, cfg)
	}
	var run func(context.Context, *env) (Result, error)
	db := cfg.RedisDB
	switch scenario {
	case ScenarioLimits:
		run = runLimits
	case ScenarioMakespan:
		run, db = runMakespan, cfg.RedisDB+1
	case ScenarioOverhead:
		run, db = runOverhead, cfg.RedisDB+2
	case ScenarioSentinel:
		run = runSentinel
	case ScenarioScale:
		run, db = runScale, cfg.RedisDB+3
	default:
		return nil, fmt.Errorf("%w: unknown scenario %q (want %s)", ErrConfig, scenario, strings.Join(Scenarios(), ", "))
	}
	if scenario != ScenarioOverhead && cfg.Executable == "" {
		return nil, fmt.Errorf("%w: scenario %s starts processes and needs the likeness executable", ErrConfig, scenario)
	}
	e, err := setup(ctx, cfg, scenario, db)
	if err != nil {
		return nil, err
	}
	res, err := run(ctx, e)
	e.close(err == nil)
	return res, err
}

// reportSteal notes the machine's CPU time at the start of a scenario and
// returns what reports, at its end, the share of it the hypervisor stole:
// on a shared VM the figures of a run with much steal are not comparable
// with the others (the same tree's overhead measured 480 and 649 tasks/s
// on two days, raw asynq alike).
func reportSteal(cfg Config, scenario string) func() {
	total0, steal0, ok := cpuTimes()
	return func() {
		total1, steal1, ok1 := cpuTimes()
		if !ok || !ok1 || total1 <= total0 {
			return
		}
		pct := 100 * float64(steal1-steal0) / float64(total1-total0)
		note := ""
		if pct >= 5 {
			note = " (figures not comparable with a quiet run's)"
		}
		fmt.Fprintf(cfg.Progress, "bench %s: the hypervisor stole %.1f%% of the machine's CPU time meanwhile%s\n", scenario, pct, note)
	}
}

// progressf writes one progress line, prefixed with the scenario.
func (e *env) progressf(format string, args ...any) {
	fmt.Fprintf(e.cfg.Progress, "bench %s: %s\n", e.scenario, fmt.Sprintf(format, args...))
}

// since formats a duration for progress lines.
func since(t time.Time) string { return time.Since(t).Round(100 * time.Millisecond).String() }
