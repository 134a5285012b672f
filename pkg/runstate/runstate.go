// Package runstate keeps each run's live state in Redis: what the run is, how
// many of its tasks reached each terminal state, what it has cost, whether it
// was canceled, and each task's attempt history.
//
// It is the fan-in trigger of the lifecycle: a worker calls Complete when a
// task reaches a terminal state; Complete counts each task exactly once (a
// set of finished task ids guards the counters, so asynq redeliveries are
// harmless) and reports whether the run is now complete, at which point the
// worker enqueues the run's single finalize task.
//
// All keys of one run share a Redis Cluster hash tag, so the Lua scripts that
// touch several of them stay on one slot. Beside the runs, the cache index
// (cache.go) says which requests already have a stored output; a task's
// first round trip (Begin) reads its run state and asks the index at once.
package runstate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/pkg/manifest"
)

// ErrNotFound is returned for a run id Redis does not know.
var ErrNotFound = errors.New("run not found")

// State is a run's lifecycle state.
type State string

// Run states.
const (
	Running  State = "running"
	Done     State = "done"
	Canceled State = "canceled"
)

// Run is what the producer records when it submits a run.
type Run struct {
	ID        string
	Name      string
	SpecKey   string
	Total     int
	BudgetUSD float64
	CreatedAt time.Time
	// TraceParent is the W3C traceparent of the run's root span, so the
	// fan-in and status tools can join the run's trace.
	TraceParent string
	// Models are the model refs the run uses, for status displays.
	Models []string
	// InfraRetryFor is how long a task of the run keeps being retried
	// through infrastructure faults (Redis, the object store, dead
	// workers, deadlines) before it ends failed with class INFRA. Zero
	// means DefaultInfraRetryFor.
	InfraRetryFor time.Duration
	// OutputRetries, MaxAttempts and Tags are the spec's settings every
	// task of the run carries, kept so a retry can enqueue a task again
	// from its record alone.
	OutputRetries, MaxAttempts, Tags int
}

// DefaultInfraRetryFor is how long infrastructure faults are retried when a
// run does not say: long enough for an overnight run to ride out an outage
// of the bucket or Redis and for its operator to wake up.
const DefaultInfraRetryFor = 6 * time.Hour

// Status is a snapshot of a run.
type Status struct {
	Run
	State     State
	Enqueued  bool
	Succeeded int
	Failed    int
	// SkippedBudget and SkippedCanceled are tasks that never called a provider.
	SkippedBudget   int
	SkippedCanceled int
	// Cached counts succeeded tasks whose output was already stored.
	Cached int
	// CostUSD is what the run has spent so far.
	CostUSD float64
	// ReservedUSD is cost reserved by tasks in flight.
	ReservedUSD float64
	// Finalized is 1 once the fan-in has run for the run's current
	// completion, 0 while tasks are open (a retry reopens a finalized run).
	Finalized int
	// Finalizations counts fan-ins over the run's life; each one gets its
	// own webhook delivery.
	Finalizations int
	FinishedAt    time.Time
	// What the run is waiting on, for status displays: its control flags,
	// provider requests paid and open, tasks infrastructure faults are
	// failing (and one of their errors), and the fan-in's last
	// infrastructure error while it retries.
	Paused, Canceled bool
	PendingRequests  int
	InfraFailing     int
	InfraErr         string
	FinalizeErr      string
}

// Done returns the number of tasks in a terminal state.
func (s *Status) Done() int { return s.Succeeded + s.Failed + s.SkippedBudget + s.SkippedCanceled }

// Complete reports whether every task has reached a terminal state.
func (s *Status) Complete() bool { return s.Total > 0 && s.Done() >= s.Total }

// Config configures a Store.
type Config struct {
	// Prefix namespaces every key. Default "likeness".
	Prefix string
	// TTL is how long a run's keys live after they were last created or
	// finished. Default 30 days.
	TTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// WaitReplicas, above 0, makes Complete confirm (WAIT) that this many
	// replicas received its count. Behind Sentinel a failover loses what
	// the old master took in its last moments; a count it could not
	// confirm is made again after RecountAfter, on whichever master the
	// client follows by then (counting is idempotent), so a task whose
	// queue acknowledgement survived is never left uncounted. Default 0:
	// no confirmation (one server, Cluster). Needs a client of one master.
	WaitReplicas int
	// WaitTimeout bounds each WAIT. Default 100ms: a replica in sync
	// confirms in about a round trip; one that is not (a master promoted
	// seconds ago, whose old master Sentinel has not yet made its replica)
	// costs each count this plus RecountAfter until it is.
	WaitTimeout time.Duration
	// RecountAfter is the pause before counting again: long enough for
	// the client to follow Sentinel to the new master. Default 1.5s.
	RecountAfter time.Duration
	// FoldSize is how many finished tasks' records a run:fold task folds
	// into one part object (see fold.go). Default DefaultFoldSize (1,000);
	// negative turns folding off (Finish pushes no lines).
	FoldSize int
}

// Store reads and writes run state in Redis.
type Store struct {
	rdb redis.UniversalClient
	cfg Config
}

// New returns a Store over rdb.
func New(rdb redis.UniversalClient, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = "likeness"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 100 * time.Millisecond
	}
	if cfg.RecountAfter <= 0 {
		cfg.RecountAfter = 1500 * time.Millisecond
	}
	if cfg.FoldSize == 0 {
		cfg.FoldSize = DefaultFoldSize
	}
	return &Store{rdb: rdb, cfg: cfg}
}

// Keys of one run. They share the hash tag {run}, so every script and
// pipeline over them stays on one Redis Cluster slot.
func (s *Store) metaKey(run string) string { return s.cfg.Prefix + ":run:{" + run + "}" }

// statusKey maps each finished task to its terminal status: the one piece
// of per-task state a finished task keeps (its record holds the rest).
func (s *Store) statusKey(run string) string   { return s.metaKey(run) + ":status" }
func (s *Store) reservedKey(run string) string { return s.metaKey(run) + ":reserved" }
func (s *Store) stoppedKey(run string) string  { return s.metaKey(run) + ":stopped" }

// pendingKey maps a task to the provider request its current attempt has
// open (a paid prediction a redelivery resumes).
func (s *Store) pendingKey(run string) string { return s.metaKey(run) + ":pending" }

// settlingKey marks tasks whose terminal record is being written.
func (s *Store) settlingKey(run string) string { return s.metaKey(run) + ":settling" }

// infraKey holds, per task, when infrastructure faults began failing it
// ("<task>") and the latest one ("<task>:err").
func (s *Store) infraKey(run string) string { return s.metaKey(run) + ":infra" }

// baseKey holds, per retried task, how many of its attempts came before
// the retry (they stay in its history and cost, not in its retry budgets).
func (s *Store) baseKey(run string) string { return s.metaKey(run) + ":base" }
func (s *Store) attemptsKey(run, task string) string {
	return s.metaKey(run) + ":attempts:" + task
}
func (s *Store) indexKey() string { return s.cfg.Prefix + ":runs" }

// micro converts dollars to integer micro-dollars for atomic Redis arithmetic.
func micro(usd float64) int64 { return int64(math.Round(usd * 1e6)) }

var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// Create records a new run. It returns false, and changes nothing, if a run
// with the same id exists. Runs created longer than TTL ago leave the runs
// index (their keys have expired by then).
func (s *Store) Create(ctx context.Context, r Run) (bool, error) {
	args := []any{
		r.CreatedAt.UnixMilli(), s.cfg.TTL.Milliseconds(),
		"id", r.ID, "name", r.Name, "spec_key", r.SpecKey,
		"total", r.Total, "budget_micro", micro(r.BudgetUSD),
		"created_ms", r.CreatedAt.UnixMilli(), "traceparent", r.TraceParent,
		"models", strings.Join(r.Models, ","),
		"state", string(Running),
		"infra_retry_ms", cmpOr(r.InfraRetryFor, DefaultInfraRetryFor).Milliseconds(),
		"output_retries", r.OutputRetries, "max_attempts", r.MaxAttempts, "tags", r.Tags,
	}
	n, err := createScript.Run(ctx, s.rdb, []string{s.metaKey(r.ID)}, args...).Int()
	if err != nil {
		return false, fmt.Errorf("runstate: create %s: %w", r.ID, err)
	}
	if n != 1 {
		return false, nil
	}
	// The index lives in another Cluster slot than the run's keys, so it
	// is written apart from the script; List only orders what it finds.
	created := r.CreatedAt.UnixMilli()
	pipe := s.rdb.Pipeline()
	pipe.ZAdd(ctx, s.indexKey(), redis.Z{Score: float64(created), Member: r.ID})
	pipe.ZRemRangeByScore(ctx, s.indexKey(), "-inf", "("+strconv.FormatInt(created-s.cfg.TTL.Milliseconds(), 10))
	if _, err := pipe.Exec(ctx); err != nil {
		return false, fmt.Errorf("runstate: index %s: %w", r.ID, err)
	}
	return true, nil
}

// MarkEnqueued records that every task of the run is in the queue.
func (s *Store) MarkEnqueued(ctx context.Context, run string) error {
	if err := s.rdb.HSet(ctx, s.metaKey(run), "enqueued", 1).Err(); err != nil {
		return fmt.Errorf("runstate: mark enqueued %s: %w", run, err)
	}
	return nil
}

// Get returns a snapshot of the run.
func (s *Store) Get(ctx context.Context, run string) (*Status, error) {
	pipe := s.rdb.Pipeline()
	meta := pipe.HGetAll(ctx, s.metaKey(run))
	pending := pipe.HLen(ctx, s.pendingKey(run))
	infra := pipe.HGetAll(ctx, s.infraKey(run))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("runstate: get %s: %w", run, err)
	}
	m := meta.Val()
	if len(m) == 0 {
		return nil, fmt.Errorf("runstate: %s: %w", run, ErrNotFound)
	}
	atoi := func(k string) int { n, _ := strconv.Atoi(m[k]); return n }
	atoi64 := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	st := &Status{
		Run: Run{
			ID: m["id"], Name: m["name"], SpecKey: m["spec_key"], Total: atoi("total"),
			BudgetUSD:     float64(atoi64("budget_micro")) / 1e6,
			CreatedAt:     time.UnixMilli(atoi64("created_ms")),
			TraceParent:   m["traceparent"],
			InfraRetryFor: cmpOr(time.Duration(atoi64("infra_retry_ms"))*time.Millisecond, DefaultInfraRetryFor),
			OutputRetries: atoi("output_retries"), MaxAttempts: atoi("max_attempts"), Tags: atoi("tags"),
		},
		State:           State(m["state"]),
		Enqueued:        m["enqueued"] == "1",
		Succeeded:       atoi(string(manifest.Succeeded)),
		Failed:          atoi(string(manifest.Failed)),
		SkippedBudget:   atoi(string(manifest.SkippedBudget)),
		SkippedCanceled: atoi(string(manifest.SkippedCanceled)),
		Cached:          atoi("cached"),
		CostUSD:         float64(atoi64("cost_micro")) / 1e6,
		ReservedUSD:     float64(atoi64("reserved_micro")) / 1e6,
		Finalized:       atoi("finalized"),
		Finalizations:   atoi("finalizations"),
	}
	if m["models"] != "" {
		st.Models = strings.Split(m["models"], ",")
	}
	st.Paused = m["paused"] == "1"
	st.Canceled = m["canceled"] == "1"
	st.PendingRequests = int(pending.Val())
	var latest int64
	for k, v := range infra.Val() {
		if strings.HasSuffix(k, ":err") {
			continue
		}
		ms, _ := strconv.ParseInt(v, 10, 64)
		if k == "finalize" {
			st.FinalizeErr = infra.Val()[k+":err"]
			continue
		}
		st.InfraFailing++
		if ms >= latest {
			latest, st.InfraErr = ms, infra.Val()[k+":err"]
		}
	}
	if ms := atoi64("finished_ms"); ms > 0 {
		st.FinishedAt = time.UnixMilli(ms)
	}
	return st, nil
}

// Cancel marks the run canceled; workers skip its remaining tasks.
func (s *Store) Cancel(ctx context.Context, run string) error {
	n, err := s.rdb.Exists(ctx, s.metaKey(run)).Result()
	if err != nil {
		return fmt.Errorf("runstate: cancel %s: %w", run, err)
	}
	if n == 0 {
		return fmt.Errorf("runstate: cancel %s: %w", run, ErrNotFound)
	}
	if err := s.rdb.HSet(ctx, s.metaKey(run), "canceled", 1).Err(); err != nil {
		return fmt.Errorf("runstate: cancel %s: %w", run, err)
	}
	return nil
}

// Canceled reports whether the run was canceled.
func (s *Store) Canceled(ctx context.Context, run string) (bool, error) {
	v, err := s.rdb.HGet(ctx, s.metaKey(run), "canceled").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("runstate: canceled %s: %w", run, err)
	}
	return v == "1", nil
}

// MarkFinalized records a finalize execution and moves the run to its final
// state. It returns how many times the run has been finalized over its life
// (a retried run is finalized again), which numbers its webhook deliveries.
func (s *Store) MarkFinalized(ctx context.Context, run string) (int, error) {
	st, err := s.Get(ctx, run)
	if err != nil {
		return 0, err
	}
	state := Done
	if c, _ := s.Canceled(ctx, run); c {
		state = Canceled
	}
	pipe := s.rdb.TxPipeline()
	n := pipe.HIncrBy(ctx, s.metaKey(run), "finalizations", 1)
	pipe.HSet(ctx, s.metaKey(run), "finalized", 1, "state", string(state), "finished_ms", s.cfg.Now().UnixMilli())
	pipe.PExpire(ctx, s.metaKey(run), s.cfg.TTL)
	pipe.HDel(ctx, s.infraKey(run), "finalize", "finalize:err")
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("runstate: finalize %s: %w", st.ID, err)
	}
	return int(n.Val()), nil
}

// List returns the ids of the most recent runs, newest first.
func (s *Store) List(ctx context.Context, limit int64) ([]string, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.indexKey(), 0, limit-1).Result()
	if err != nil {
		return nil, fmt.Errorf("runstate: list: %w", err)
	}
	return ids, nil
}

// StopProvider records that a provider must not be called again for the
// run (a BILLING failure: out of credit, revoked key).
func (s *Store) StopProvider(ctx context.Context, run, provider, reason string) error {
	pipe := s.rdb.TxPipeline()
	pipe.HSetNX(ctx, s.stoppedKey(run), provider, reason)
	pipe.PExpire(ctx, s.stoppedKey(run), s.cfg.TTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("runstate: stop %s for %s: %w", provider, run, err)
	}
	return nil
}

// ProviderStopped returns why a provider was stopped for the run, if it was.
func (s *Store) ProviderStopped(ctx context.Context, run, provider string) (string, bool, error) {
	v, err := s.rdb.HGet(ctx, s.stoppedKey(run), provider).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("runstate: stopped %s for %s: %w", provider, run, err)
	}
	return v, true, nil
}

// ResumeProviders forgets the run's billing stops, for a retry after the
// account was topped up.
func (s *Store) ResumeProviders(ctx context.Context, run string) error {
	if err := s.rdb.Del(ctx, s.stoppedKey(run)).Err(); err != nil {
		return fmt.Errorf("runstate: resume providers %s: %w", run, err)
	}
	return nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
