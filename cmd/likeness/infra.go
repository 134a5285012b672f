package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/pkg/embedded"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/ark"
	"github.com/likeness-run/likeness/pkg/provider/bfl"
	"github.com/likeness-run/likeness/pkg/provider/ideogram"
	"github.com/likeness-run/likeness/pkg/provider/openai"
	"github.com/likeness-run/likeness/pkg/provider/replicate"
	"github.com/likeness-run/likeness/pkg/provider/runway"
	"github.com/likeness-run/likeness/pkg/provider/sim"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/redisconn"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/worker"
)

// blobStore is the method set of both stores, for the CLI that builds them.
type blobStore interface {
	worker.Blobs
	PutIfAbsent(ctx context.Context, key string, data []byte, contentType string) (bool, error)
	Delete(ctx context.Context, key string) error
	Location(key string) string
}

// infra is the connected Redis and object store a command works with.
type infra struct {
	redisOpt asynq.RedisConnOpt
	rdb      redis.UniversalClient
	runs     *runstate.Store
	limiter  *ratelimit.Limiter
	blobs    blobStore
	embedded *embedded.Redis
	// distributed is false in the embedded mode.
	distributed bool
}

func (in *infra) Close() {
	if in.limiter != nil {
		in.limiter.Close()
	}
	if in.rdb != nil {
		in.rdb.Close()
	}
	if in.embedded != nil {
		in.embedded.Close()
	}
}

// Behind Sentinel, run state confirms each task's count reached a replica
// (runstate.Config.WaitReplicas) and counts again if not, and the limiter
// does the same for each freed concurrency slot (ratelimit.Config.
// WaitReplicas): a failover loses the writes the old master took in its
// last moments as master (replication is asynchronous).
//
// sentinelLeaseTTL is the concurrency-slot lease behind Sentinel: leases
// are refreshed every third of it, so a worker alive through a failover of
// a few seconds keeps its own slots. A release lost anyway (the worker
// died before it could confirm it) holds its slot this long.
const sentinelLeaseTTL = 10 * time.Second

// sentinelRateReserve is the share of each rate limit kept ungranted
// behind Sentinel (ratelimit.Config.Reserve): 2%, 12 requests of 600 a
// minute, more than the about one second of grants a failover loses.
const sentinelRateReserve = 0.02

// connectOpts says what a command may fall back to.
type connectOpts struct {
	// embedded allows an in-process Redis when LIKENESS_REDIS_URL is unset.
	embedded bool
	// outDir is the local store's root when LIKENESS_S3_ENDPOINT is unset;
	// empty means a bucket is required.
	outDir string
	// needStore is false for commands that only read Redis.
	needStore bool
	// waitForStore makes a bucket that does not answer a wait, not an
	// error (the worker).
	waitForStore bool
}

// connect builds Redis and store clients from the environment and checks
// that both answer. Missing configuration is bad input (exit 2); a server
// that does not answer is infrastructure (exit 3).
func (a *app) connect(ctx context.Context, o connectOpts) (*infra, error) {
	in := &infra{}
	raw := a.getenv("LIKENESS_REDIS_URL")
	where := "embedded redis"
	var (
		limits ratelimit.Config
		runs   runstate.Config
	)
	switch {
	case raw != "":
		opt, err := redisconn.Parse(raw)
		if err != nil {
			return nil, inputErr(fmt.Errorf("LIKENESS_REDIS_URL: %w", err))
		}
		in.redisOpt = opt.Asynq()
		in.rdb = opt.Client()
		in.distributed = true
		where = "redis " + opt.String()
		if opt.Mode == redisconn.Sentinel {
			limits.LeaseTTL = sentinelLeaseTTL
			limits.WaitReplicas = 1
			limits.Reserve = sentinelRateReserve
			runs.WaitReplicas = 1
		}
	case o.embedded:
		r, err := embedded.StartRedis()
		if err != nil {
			return nil, infraErr(err)
		}
		in.embedded = r
		in.redisOpt = asynq.RedisClientOpt{Addr: r.Addr()}
		in.rdb = redis.NewClient(&redis.Options{Addr: r.Addr()})
	default:
		return nil, inputErr(errors.New("LIKENESS_REDIS_URL is not set: this command needs the shared Redis (or use `likeness run SPEC` for the embedded mode)"))
	}
	rdb := in.rdb
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		in.Close()
		return nil, infraErr(fmt.Errorf("%s does not answer: %w", where, err))
	}
	in.runs = runstate.New(rdb, runs)
	in.limiter = ratelimit.New(rdb, limits)
	if !o.needStore {
		return in, nil
	}
	blobs, err := a.openStore(ctx, o.outDir)
	for o.waitForStore && isInfra(err) {
		// A worker started while the bucket is away waits for it: its
		// tasks could not run anyway, and a fleet whose replacements
		// exit at start comes back cold.
		a.log.Warn("object store does not answer; waiting for it", "err", err)
		select {
		case <-ctx.Done():
			in.Close()
			return nil, err
		case <-time.After(2 * time.Second):
		}
		blobs, err = a.openStore(ctx, o.outDir)
	}
	if err != nil {
		in.Close()
		return nil, err
	}
	in.blobs = blobs
	return in, nil
}

func isInfra(err error) bool {
	var ee *exitError
	return errors.As(err, &ee) && ee.code == exitInfra
}

func (a *app) openStore(ctx context.Context, outDir string) (blobStore, error) {
	endpoint := a.getenv("LIKENESS_S3_ENDPOINT")
	if endpoint == "" {
		if outDir == "" {
			return nil, inputErr(errors.New("LIKENESS_S3_ENDPOINT is not set: this command needs the shared bucket"))
		}
		d, err := store.NewDir(outDir)
		if err != nil {
			return nil, inputErr(fmt.Errorf("--out %s: %w", outDir, err))
		}
		return d, nil
	}
	secure := false
	if v := a.getenv("LIKENESS_S3_SECURE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, inputErr(fmt.Errorf("LIKENESS_S3_SECURE=%q: want true or false", v))
		}
		secure = b
	}
	s3, err := store.NewS3(store.S3Config{
		Endpoint: endpoint, AccessKey: a.getenv("LIKENESS_S3_ACCESS_KEY"),
		SecretKey: a.getenv("LIKENESS_S3_SECRET_KEY"), Bucket: a.getenv("LIKENESS_S3_BUCKET"),
		Secure: secure, Region: a.getenv("LIKENESS_S3_REGION"),
		// Only where the operator says hosted providers can reach the
		// bucket do references travel as presigned URLs; else as bytes.
		PublicEndpoint: a.getenv("LIKENESS_S3_PUBLIC_ENDPOINT"),
	})
	if err != nil {
		return nil, inputErr(err)
	}
	bctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := s3.EnsureBucket(bctx); err != nil {
		return nil, infraErr(fmt.Errorf("object store %s: %w", endpoint, err))
	}
	return s3, nil
}

// limits reads the operator's limit overrides from LIKENESS_LIMITS, a YAML
// file (see ratelimit.Overrides); unset means the registry's defaults.
func (a *app) limits() (ratelimit.Overrides, error) {
	path := a.getenv("LIKENESS_LIMITS")
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, inputErr(fmt.Errorf("LIKENESS_LIMITS: %w", err))
	}
	o, err := ratelimit.ParseOverrides(data)
	if err != nil {
		return nil, inputErr(fmt.Errorf("LIKENESS_LIMITS %s: %w", path, err))
	}
	return o, nil
}

// workerConfig is the worker configuration shared by `worker` and `run`.
func (a *app) workerConfig(in *infra, concurrency int) (worker.Config, error) {
	gens, err := a.generators()
	if err != nil {
		return worker.Config{}, inputErr(err)
	}
	lims, err := a.limits()
	if err != nil {
		return worker.Config{}, err
	}
	hook, err := a.webhook()
	if err != nil {
		return worker.Config{}, err
	}
	cfg := worker.Config{
		Redis: in.redisOpt, Store: in.blobs, Runs: in.runs, Generators: gens,
		Limiter: in.limiter, Limits: lims, Concurrency: concurrency, Logger: a.log,
		Telemetry: a.tel, Webhook: hook,
	}
	if t, ok := gens["replicate"].(worker.Tagger); ok {
		cfg.Tagger = t
	}
	return cfg, nil
}

// webhook reads the run.finished webhook from LIKENESS_WEBHOOK_URL and
// LIKENESS_WEBHOOK_SECRET. Messages never quote the URL: receivers put
// tokens in it.
func (a *app) webhook() (worker.Webhook, error) {
	h := worker.Webhook{URL: a.getenv("LIKENESS_WEBHOOK_URL"), Secret: a.getenv("LIKENESS_WEBHOOK_SECRET")}
	if h.URL == "" {
		if h.Secret != "" {
			return h, inputErr(errors.New("LIKENESS_WEBHOOK_SECRET is set but LIKENESS_WEBHOOK_URL is not"))
		}
		return h, nil
	}
	if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return h, inputErr(errors.New("LIKENESS_WEBHOOK_URL must be an http:// or https:// URL with a host"))
	}
	return h, nil
}

// generators builds the adapters this process can serve: the simulator
// always, each hosted provider when its key is in the environment. A
// provider's base URL can be overridden with LIKENESS_<PROVIDER>_BASE_URL.
func (a *app) generators() (map[string]provider.Generator, error) {
	s, err := sim.New(sim.Config{})
	if err != nil {
		return nil, err
	}
	gens := map[string]provider.Generator{"sim": s}
	add := func(name string, build func(key, base string) (provider.Generator, error)) error {
		key := strings.TrimSpace(a.getenv(keyEnv(name)))
		if key == "" {
			return nil
		}
		g, err := build(key, a.getenv("LIKENESS_"+strings.ToUpper(name)+"_BASE_URL"))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		gens[name] = g
		return nil
	}
	// Every adapter's HTTP client is traced (a span per request: submit,
	// each poll, the download) and keeps the adapter's own timeout.
	client := func(timeout time.Duration) *http.Client {
		return &http.Client{Transport: a.tel.Transport(http.DefaultTransport), Timeout: timeout}
	}
	builders := map[string]func(key, base string) (provider.Generator, error){
		"replicate": func(key, base string) (provider.Generator, error) {
			// gpt-image-1 on Replicate bills the user's own OpenAI account:
			// the adapter passes this key as an input, and nothing stores it.
			return replicate.New(replicate.Config{APIKey: key, BaseURL: base, HTTPClient: client(replicate.DefaultTimeout),
				OpenAIKey: strings.TrimSpace(a.getenv("OPENAI_API_KEY"))})
		},
		"openai": func(key, base string) (provider.Generator, error) {
			return openai.New(openai.Config{APIKey: key, BaseURL: base, HTTPClient: client(openai.DefaultTimeout)})
		},
		"bfl": func(key, base string) (provider.Generator, error) {
			return bfl.New(bfl.Config{APIKey: key, BaseURL: base, HTTPClient: client(bfl.DefaultTimeout)})
		},
		"runway": func(key, base string) (provider.Generator, error) {
			return runway.New(runway.Config{APIKey: key, BaseURL: base, HTTPClient: client(runway.DefaultTimeout)})
		},
		"ideogram": func(key, base string) (provider.Generator, error) {
			return ideogram.New(ideogram.Config{APIKey: key, BaseURL: base, HTTPClient: client(ideogram.DefaultTimeout)})
		},
		"ark": func(key, base string) (provider.Generator, error) {
			return ark.New(ark.Config{APIKey: key, BaseURL: base, HTTPClient: client(ark.DefaultTimeout)})
		},
	}
	for name, build := range builders {
		if err := add(name, build); err != nil {
			return nil, err
		}
	}
	return gens, nil
}
