// Package worker is the consumer role: it serves the asynq queues, runs each
// image:generate task through the lifecycle in design.md (skip if canceled or
// already stored, call the provider, check the output, store image and
// record, count the terminal state once) and runs the run:finalize fan-in
// that writes the manifest, the run summary and the comparison report; with
// a Webhook configured, a run:notify task then announces the finished run.
// While a run goes, run:fold tasks fold its finished records into part
// objects a thousand at a time (fold.go), so the fan-in reads a part per
// thousand records instead of every record.
//
// The queue owns retries. Handlers classify every failure with the
// pkg/provider vocabulary and asynq's RetryDelayFunc/IsFailure hooks turn the
// class into a wait: exactly the provider's wait for RATE (not counted as a
// failure), jittered backoff for TRANSIENT, a new seed for SAFETY and bad
// outputs, and no retry for INPUT and BILLING.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/imagecheck"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

// Blobs is the object storage the worker reads references from and writes
// outputs, records and run artifacts to. *store.S3 and *store.Dir satisfy it.
type Blobs interface {
	Put(ctx context.Context, key string, data []byte, contentType string) error
	Get(ctx context.Context, key string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]store.Info, error)
	URL(ctx context.Context, key string, ttl time.Duration) (string, error)
}

// Tagger produces topic tags for a text (the Replicate topic-tags model),
// for dataset runs whose spec asks for tags.
type Tagger interface {
	Tags(ctx context.Context, text string, n int) ([]string, error)
}

// Config configures a Worker. Zero values are replaced by the documented
// defaults; Redis, Store, Runs and Generators are required.
type Config struct {
	// Redis is the queue's Redis connection.
	Redis asynq.RedisConnOpt
	// Store holds references, outputs, records and run artifacts.
	Store Blobs
	// Runs is the run state in Redis.
	Runs *runstate.Store
	// Generators maps a provider name ("sim", "replicate", ...) to its
	// adapter. The worker serves exactly these providers' queues.
	Generators map[string]provider.Generator
	// Registry resolves model refs for expected output sizes and prices.
	// Default provider.DefaultRegistry().
	Registry *provider.Registry
	// Concurrency is the number of tasks of one provider processed at once:
	// every provider gets its own pool, so a throttled or slow provider never
	// holds slots another provider's tasks could use. Default 8.
	Concurrency int
	// Tagger, when set, tags each successful task's prompt for specs with a
	// tags block. Nil: such records carry no tags and a tags_error.
	Tagger Tagger
	// ProviderConcurrency overrides Concurrency per provider name.
	ProviderConcurrency map[string]int
	// Limiter enforces fleet-wide limits (rate, concurrency, cooldown,
	// circuit breaker) shared through Redis. Nil means no fleet limits.
	Limiter *ratelimit.Limiter
	// Limits overrides the registry's default limits, by limit key or model ref.
	Limits ratelimit.Overrides
	// MaxInlineWait is the longest limit wait spent inside a task; longer
	// waits requeue the task for exactly the wait. It also bounds, in all,
	// the sub-second waits (a provider's 429 asking for 300 ms) a delivery
	// spends inside its handler rather than be requeued, since asynq
	// schedules in whole seconds. Default 3s.
	MaxInlineWait time.Duration
	// Checks are the output checks. Default imagecheck.Default().
	Checks []imagecheck.Check
	// BackoffBase and BackoffCap shape the jittered exponential backoff of
	// TRANSIENT failures. Defaults 1s and 2m: the first retry comes 0.5 to 1 s after
	// the failure, the second 0.5 to 2 s, doubling up to the cap.
	BackoffBase, BackoffCap time.Duration
	// PollInterval is how often the worker looks for delayed and retried
	// tasks that became due, and for new tasks when queues are empty.
	// Default 500ms.
	PollInterval time.Duration
	// ShutdownTimeout is how long Shutdown waits for in-flight tasks before
	// they are requeued. Default 30s.
	ShutdownTimeout time.Duration
	// Webhook, when its URL is set, is told when a run has been finalized.
	Webhook Webhook
	// Telemetry traces every attempt (joining the run's trace through the
	// task headers) and records the worker's metrics. Nil: neither.
	Telemetry *telemetry.Telemetry
	// ID names this worker in records and logs. Default host:pid.
	ID string
	// RefCacheBytes bounds the memory the cache of reference images holds
	// (least recently used first out). Default 256 MiB.
	RefCacheBytes int64
	// InfraBackoffCap is the longest pause between retries of a task that
	// likeness's own infrastructure failed; the pause grows with the
	// outage from about a second. Default 10s.
	InfraBackoffCap time.Duration
	// PendingMaxAge is the age past which an open provider request is not
	// resumed but replaced: no provider keeps a request running that long
	// (Replicate cancels at 30 minutes). Default 45m.
	PendingMaxAge time.Duration
	// ClaimTTL is how long a delivery's claim on its task outlives the
	// delivery's last heartbeat (one every ClaimTTL/3). Default 6s.
	ClaimTTL time.Duration
	// RescueEvery is how often the fleet (one worker per period) looks for
	// active tasks no delivery claims: tasks a killed worker left behind.
	// Default 2s.
	RescueEvery time.Duration
	// RescueAfter is how long a task must stay active and unclaimed before
	// it is enqueued again. Default 3s: a live delivery claims its task
	// within milliseconds of taking it and renews the claim every
	// ClaimTTL/3, so a killed worker's tasks are back within about
	// ClaimTTL+RescueAfter+RescueEvery (11 s).
	RescueAfter time.Duration
	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.Redis == nil {
		return c, errors.New("worker: Config.Redis is required")
	}
	if c.Store == nil {
		return c, errors.New("worker: Config.Store is required")
	}
	if c.Runs == nil {
		return c, errors.New("worker: Config.Runs is required")
	}
	if len(c.Generators) == 0 {
		return c, errors.New("worker: Config.Generators is empty: no provider to serve")
	}
	if c.Registry == nil {
		c.Registry = provider.DefaultRegistry()
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.Checks == nil {
		c.Checks = imagecheck.Default()
	}
	if c.MaxInlineWait <= 0 {
		c.MaxInlineWait = 3 * time.Second
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = time.Second
	}
	if c.BackoffCap <= 0 {
		c.BackoffCap = 2 * time.Minute
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 500 * time.Millisecond
	}
	if c.RefCacheBytes <= 0 {
		c.RefCacheBytes = 256 << 20
	}
	if c.InfraBackoffCap <= 0 {
		c.InfraBackoffCap = 10 * time.Second
	}
	if c.PendingMaxAge <= 0 {
		c.PendingMaxAge = 45 * time.Minute
	}
	if c.ClaimTTL <= 0 {
		c.ClaimTTL = 6 * time.Second
	}
	if c.RescueEvery <= 0 {
		c.RescueEvery = 2 * time.Second
	}
	if c.RescueAfter <= 0 {
		c.RescueAfter = 3 * time.Second
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// Worker consumes generation and finalize tasks. It runs one asynq server
// per provider queue, each with its own concurrency, and one for the control
// queue, all in this process.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	servers map[string]*asynq.Server // by queue
	client  *asynq.Client
	refs    *refCache
	// deliveries numbers this worker's deliveries, for claim holders.
	deliveries atomic.Int64
	// storeName names the bucket for the cache index; index rebuilds it.
	storeName string
	index     indexGate
	// stopRescue ends the rescue loop; rescued closes when it has.
	stopRescue context.CancelFunc
	rescued    chan struct{}
}

// New builds a Worker; it does not connect until Start.
func New(cfg Config) (*Worker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, refs: newRefCache(cfg.RefCacheBytes), servers: map[string]*asynq.Server{},
		storeName: StoreName(cfg.Store)}
	for queue, n := range w.Queues() {
		w.servers[queue] = asynq.NewServer(cfg.Redis, asynq.Config{
			Concurrency:              n,
			Queues:                   map[string]int{queue: 1},
			RetryDelayFunc:           w.retryDelay,
			IsFailure:                isFailure,
			ShutdownTimeout:          cfg.ShutdownTimeout,
			DelayedTaskCheckInterval: cfg.PollInterval,
			TaskCheckInterval:        cfg.PollInterval,
			Logger:                   newQueueLogger(cfg.Logger),
			LogLevel:                 asynq.WarnLevel,
			ErrorHandler:             asynq.ErrorHandlerFunc(w.logFailure),
		})
	}
	w.client = asynq.NewClient(cfg.Redis)
	return w, nil
}

// Queues returns the queues this worker serves with the number of tasks it
// works from each at once: every provider's generation queue, and the
// control queue (finalize).
func (w *Worker) Queues() map[string]int {
	q := map[string]int{task.QueueControl: 2}
	for name := range w.cfg.Generators {
		n := w.cfg.Concurrency
		if c, ok := w.cfg.ProviderConcurrency[name]; ok && c > 0 {
			n = c
		}
		q[task.QueueFor(name)] = n
	}
	return q
}

// Providers returns the provider names this worker serves, sorted.
func (w *Worker) Providers() []string {
	out := make([]string, 0, len(w.cfg.Generators))
	for name := range w.cfg.Generators {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Handler returns the task router, for tests and for embedding the worker's
// handlers in another asynq server.
func (w *Worker) Handler() asynq.Handler {
	mux := asynq.NewServeMux()
	if w.cfg.Telemetry != nil {
		mux.Use(w.cfg.Telemetry.Middleware())
	}
	mux.HandleFunc(task.TypeGenerate, w.handleGenerate)
	mux.HandleFunc(task.TypeFinalize, w.handleFinalize)
	mux.HandleFunc(task.TypeFold, w.handleFold)
	mux.HandleFunc(task.TypeNotify, w.handleNotify)
	return mux
}

// Start begins processing in background goroutines. It does not install
// signal handlers: the caller owns shutdown and calls Shutdown.
func (w *Worker) Start() error {
	h := w.Handler()
	for queue, srv := range w.servers {
		if err := srv.Start(h); err != nil {
			w.Shutdown()
			return fmt.Errorf("worker: start %s: %w", queue, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stopRescue, w.rescued = cancel, make(chan struct{})
	go func() { defer close(w.rescued); w.rescueLoop(ctx) }()
	w.log.Info("worker started", "worker", w.cfg.ID, "providers", w.Providers(), "queues", w.Queues())
	return nil
}

// Shutdown stops fetching new tasks, waits up to ShutdownTimeout for tasks
// in flight, and requeues the rest. Nothing is lost.
func (w *Worker) Shutdown() {
	if w.stopRescue != nil {
		w.stopRescue()
		<-w.rescued
	}
	var wg sync.WaitGroup
	for _, srv := range w.servers {
		wg.Add(1)
		go func() { defer wg.Done(); srv.Shutdown() }()
	}
	wg.Wait()
	if err := w.client.Close(); err != nil {
		w.log.Warn("close queue client", "err", err)
	}
}

func (w *Worker) logFailure(ctx context.Context, t *asynq.Task, err error) {
	retried, _ := asynq.GetRetryCount(ctx)
	w.log.WarnContext(ctx, "task attempt failed", "type", t.Type(), "attempt", retried+1,
		"class", string(provider.ClassOf(err)), "err", err)
}
