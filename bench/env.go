package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/pkg/redisconn"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/scheduler"
)

// env is one scenario's share of the infrastructure: a flushed Redis
// database, a new bucket, a working directory and the processes started.
type env struct {
	cfg      Config
	scenario string
	dir      string
	tmpDir   bool // dir was created here and is removed on success

	redisURL string // Config.RedisURL with the scenario's database
	redisOpt asynq.RedisConnOpt
	rdb      redis.UniversalClient
	runs     *runstate.Store
	bucket   string
	blobs    *store.S3

	mu        sync.Mutex // guards processes: chaos starts them from several goroutines
	processes []*proc
}

// procs returns the processes started so far.
func (e *env) procs() []*proc {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.processes)
}

// setup connects to Redis and the object store, flushes the scenario's
// database and creates its bucket.
func setup(ctx context.Context, cfg Config, scenario string, db int) (*env, error) {
	e, err := newEnv(cfg, scenario)
	if err != nil {
		return nil, err
	}
	if err := e.connect(ctx, db); err != nil {
		e.discard()
		return nil, err
	}
	return e, nil
}

// newEnv makes the scenario's working directory.
func newEnv(cfg Config, scenario string) (*env, error) {
	e := &env{cfg: cfg, scenario: scenario}
	var err error
	e.dir = cfg.Dir
	if e.dir == "" {
		e.dir, err = os.MkdirTemp("", "likeness-bench-"+scenario+"-")
		e.tmpDir = true
	} else {
		e.dir = filepath.Join(e.dir, scenario)
		err = os.MkdirAll(e.dir, 0o755)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: working directory: %w", err)
	}
	return e, nil
}

// connect connects to e.cfg's Redis (database db) and object store,
// flushes the database and creates the scenario's bucket.
func (e *env) connect(ctx context.Context, db int) error {
	cfg := e.cfg
	// redisconn first: its errors never quote the URL (or its password).
	ropt, err := redisconn.Parse(cfg.RedisURL)
	if err == nil {
		ropt, err = ropt.WithDB(db)
	}
	if err != nil {
		return fmt.Errorf("%w: LIKENESS_REDIS_URL: %v", ErrConfig, err)
	}
	u, err := withDB(cfg.RedisURL, db)
	if err != nil {
		return fmt.Errorf("%w: LIKENESS_REDIS_URL: %v", ErrConfig, err)
	}
	e.redisURL = u
	e.redisOpt = ropt.Asynq()
	e.rdb = ropt.Client()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.rdb.Ping(pctx).Err(); err != nil {
		return fmt.Errorf("%w: redis %s: %v", ErrInfra, ropt, err)
	}
	if err := e.rdb.FlushDB(pctx).Err(); err != nil {
		return fmt.Errorf("%w: flush redis database %d: %v", ErrInfra, db, err)
	}
	e.runs = runstate.New(e.rdb, runstate.Config{})

	e.bucket = bucketName(cfg.S3.Bucket, e.scenario, time.Now())
	e.blobs, err = store.NewS3(store.S3Config{
		Endpoint: cfg.S3.Endpoint, AccessKey: cfg.S3.AccessKey, SecretKey: cfg.S3.SecretKey,
		Bucket: e.bucket, Secure: cfg.S3.Secure, Region: cfg.S3.Region,
	})
	if err != nil {
		return fmt.Errorf("%w: object store: %v", ErrConfig, err)
	}
	bctx, cancel2 := context.WithTimeout(ctx, 15*time.Second)
	defer cancel2()
	if err := e.blobs.EnsureBucket(bctx); err != nil {
		return fmt.Errorf("%w: object store %s: %v", ErrInfra, cfg.S3.Endpoint, err)
	}
	e.progressf("redis db %d flushed, bucket %s, files in %s", db, e.bucket, e.dir)
	return nil
}

// close stops every process the scenario started (Redis and MinIO last)
// and closes the clients;
// the working directory is removed when the scenario succeeded and was
// not given one.
func (e *env) close(ok bool) {
	var first, last []*proc
	for _, p := range e.procs() {
		if p.infra {
			last = append(last, p)
		} else {
			first = append(first, p)
		}
	}
	stopAll(first, 10*time.Second)
	stopAll(last, 10*time.Second)
	if e.rdb != nil {
		e.rdb.Close()
	}
	if ok && e.tmpDir {
		os.RemoveAll(e.dir)
	} else if !ok {
		e.progressf("process logs and files kept in %s", e.dir)
	}
}

// discard undoes newEnv and connect for a scenario that never started:
// it closes the client and removes a temporary directory.
func (e *env) discard() {
	stopAll(e.procs(), 10*time.Second)
	if e.rdb != nil {
		e.rdb.Close()
	}
	if e.tmpDir {
		os.RemoveAll(e.dir)
	}
}

// withDB returns the Redis URL u (redis://, rediss:// or redis-sentinel://,
// checked by redisconn.Parse first) with database db.
func withDB(u string, db int) (string, error) {
	parsed, err := url.Parse(u)
	if err != nil {
		return "", errors.New("not a URL") // url's message would quote the password
	}
	switch parsed.Scheme {
	case redisconn.SchemeRedis, redisconn.SchemeRedisTLS, redisconn.SchemeSentinel:
	default:
		return "", fmt.Errorf("want a redis://, rediss:// or redis-sentinel:// URL (a scenario flushes a database of its own), got scheme %q", parsed.Scheme)
	}
	parsed.Path = fmt.Sprintf("/%d", db)
	return parsed.String(), nil
}

// bucketName is a new bucket per run: S3 names are 3..63 characters of
// lower-case letters, digits and hyphens.
func bucketName(prefix, scenario string, now time.Time) string {
	name := fmt.Sprintf("%s-bench-%s-%s", strings.ToLower(prefix), scenario, now.UTC().Format("20060102-150405"))
	if len(name) > 63 {
		name = strings.Trim(name[len(name)-63:], "-")
	}
	return name
}

// subprocessEnv is Config.Env without provider keys and likeness settings,
// plus the scenario's Redis and bucket and extra.
func (e *env) subprocessEnv(extra ...string) []string {
	drop := func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "REPLICATE_API_TOKEN", "OPENAI_API_KEY", "BFL_API_KEY", "RUNWAYML_API_SECRET", "IDEOGRAM_API_KEY", "ARK_API_KEY":
			return true
		}
		return strings.HasPrefix(k, "LIKENESS_")
	}
	out := make([]string, 0, len(e.cfg.Env)+8+len(extra))
	for _, kv := range e.cfg.Env {
		if !drop(kv) {
			out = append(out, kv)
		}
	}
	out = append(out,
		"LIKENESS_REDIS_URL="+e.redisURL,
		"LIKENESS_S3_ENDPOINT="+e.cfg.S3.Endpoint,
		"LIKENESS_S3_ACCESS_KEY="+e.cfg.S3.AccessKey,
		"LIKENESS_S3_SECRET_KEY="+e.cfg.S3.SecretKey,
		"LIKENESS_S3_BUCKET="+e.bucket,
		fmt.Sprintf("LIKENESS_S3_SECURE=%t", e.cfg.S3.Secure),
		"LIKENESS_LOG_LEVEL=warn",
	)
	if e.cfg.S3.Region != "" {
		out = append(out, "LIKENESS_S3_REGION="+e.cfg.S3.Region)
	}
	return append(out, extra...)
}

// writeFile writes a file into the scenario's directory and returns its path.
func (e *env) writeFile(name string, data []byte) (string, error) {
	path := filepath.Join(e.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", err
	}
	return path, os.WriteFile(path, data, 0o644)
}

// fanOut describes a spec: characters × prompts × models × variants.
type fanOut struct {
	name       string
	characters int
	prompts    int
	variants   int
	models     []specModel
	// seed is the spec's seed; 0 takes one from the clock, so no output of
	// an earlier run in the same bucket matches.
	seed int64
	// outputRetries is the spec's output_retries; 0 leaves the default.
	outputRetries int
}

type specModel struct {
	id, ref string
	params  string // YAML flow mapping, e.g. "{size: 64}"; "" for none
}

// tasks is the fan-out's task count.
func (f fanOut) tasks() int { return f.characters * f.prompts * len(f.models) * f.variants }

// loadSpec writes the spec and its references and loads it as the CLI
// would, with f.seed or, without one, a seed from the clock.
func (e *env) loadSpec(f fanOut) (*spec.Spec, error) {
	seed := f.seed
	if seed == 0 {
		seed = time.Now().UnixNano() % spec.MaxSeed
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nname: %s\nseed: %d\nvariants: %d\n", f.name, seed, f.variants)
	if f.outputRetries > 0 {
		fmt.Fprintf(&b, "output_retries: %d\n", f.outputRetries)
	}
	b.WriteString("characters:\n")
	for i := range f.characters {
		ref := fmt.Sprintf("refs/c%d.png", i)
		if _, err := e.writeFile(ref, reference(i)); err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "  - {id: c%d, reference: %s}\n", i, ref)
	}
	b.WriteString("prompts:\n")
	for i := range f.prompts {
		fmt.Fprintf(&b, "  - {id: p%d, text: \"benchmark prompt %d: the character at work\"}\n", i, i)
	}
	b.WriteString("models:\n")
	for _, m := range f.models {
		fmt.Fprintf(&b, "  - {id: %s, model: %q", m.id, m.ref)
		if m.params != "" {
			fmt.Fprintf(&b, ", params: %s", m.params)
		}
		b.WriteString("}\n")
	}
	path, err := e.writeFile("spec.yaml", []byte(b.String()))
	if err != nil {
		return nil, err
	}
	s, err := spec.LoadFile(path, nil)
	if err != nil {
		return nil, fmt.Errorf("bench spec: %w", err)
	}
	return s, nil
}

// submit enqueues the spec's run and returns its id.
func (e *env) submit(ctx context.Context, s *spec.Spec) (*scheduler.Submission, error) {
	q := asynq.NewClient(e.redisOpt)
	defer q.Close()
	p, err := scheduler.New(scheduler.Config{Queue: q, Store: e.blobs, Runs: e.runs, Telemetry: e.cfg.Telemetry, Logger: e.cfg.Logger})
	if err != nil {
		return nil, err
	}
	sub, err := p.Submit(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("submit: %w", err)
	}
	return sub, nil
}

// waitRun polls the run every poll until every task is terminal and
// returns its status and when completion was seen. report is called about
// every 5 seconds with the status.
func (e *env) waitRun(ctx context.Context, run string, poll time.Duration, check func() error, report func(*runstate.Status)) (*runstate.Status, time.Time, error) {
	t := time.NewTicker(poll)
	defer t.Stop()
	last := time.Now()
	for {
		st, err := e.runs.Get(ctx, run)
		if err != nil && !errors.Is(err, runstate.ErrNotFound) {
			return nil, time.Time{}, err
		}
		now := time.Now()
		if st != nil && st.Complete() {
			return st, now, nil
		}
		if check != nil {
			if err := check(); err != nil {
				return st, now, err
			}
		}
		if st != nil && report != nil && now.Sub(last) >= 5*time.Second {
			report(st)
			last = now
		}
		select {
		case <-ctx.Done():
			return st, now, ctx.Err()
		case <-t.C:
		}
	}
}

// reference is a small square portrait-like PNG that differs by i, so the
// simulator renders outputs that are not blank and every check has work.
func reference(i int) []byte {
	const size = 96
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	for y := range size {
		for x := range size {
			c := color.NRGBA{uint8(40 + x*150/size), uint8(90 + y*100/size), uint8(60 + 37*i%160), 255}
			if dx, dy := x-size/2, y-size*2/5; dx*dx+dy*dy < (size/4)*(size/4) {
				c = color.NRGBA{225, uint8(150 + 9*i%60), 140, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img) // encoding to memory cannot fail
	return buf.Bytes()
}
