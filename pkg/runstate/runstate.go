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
// touch several of them stay on one slot.
package runstate

import (
	"context"
	"encoding/json"
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
}

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
	// Finalized counts finalize executions (1 once the fan-in has run).
	Finalized  int
	FinishedAt time.Time
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
	// WaitTimeout bounds each WAIT. Default 500ms.
	WaitTimeout time.Duration
	// RecountAfter is the pause before counting again. Default 2s.
	RecountAfter time.Duration
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
		cfg.WaitTimeout = 500 * time.Millisecond
	}
	if cfg.RecountAfter <= 0 {
		cfg.RecountAfter = 2 * time.Second
	}
	return &Store{rdb: rdb, cfg: cfg}
}

func (s *Store) metaKey(run string) string     { return s.cfg.Prefix + ":run:{" + run + "}" }
func (s *Store) doneKey(run string) string     { return s.metaKey(run) + ":done" }
func (s *Store) reservedKey(run string) string { return s.metaKey(run) + ":reserved" }
func (s *Store) stoppedKey(run string) string  { return s.metaKey(run) + ":stopped" }
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
// with the same id exists.
func (s *Store) Create(ctx context.Context, r Run) (bool, error) {
	args := []any{
		r.CreatedAt.UnixMilli(), s.cfg.TTL.Milliseconds(),
		"id", r.ID, "name", r.Name, "spec_key", r.SpecKey,
		"total", r.Total, "budget_micro", micro(r.BudgetUSD),
		"created_ms", r.CreatedAt.UnixMilli(), "traceparent", r.TraceParent,
		"models", strings.Join(r.Models, ","),
		"state", string(Running),
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
	if err := s.rdb.ZAdd(ctx, s.indexKey(), redis.Z{Score: float64(r.CreatedAt.UnixMilli()), Member: r.ID}).Err(); err != nil {
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
	m, err := s.rdb.HGetAll(ctx, s.metaKey(run)).Result()
	if err != nil {
		return nil, fmt.Errorf("runstate: get %s: %w", run, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("runstate: %s: %w", run, ErrNotFound)
	}
	atoi := func(k string) int { n, _ := strconv.Atoi(m[k]); return n }
	atoi64 := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	st := &Status{
		Run: Run{
			ID: m["id"], Name: m["name"], SpecKey: m["spec_key"], Total: atoi("total"),
			BudgetUSD:   float64(atoi64("budget_micro")) / 1e6,
			CreatedAt:   time.UnixMilli(atoi64("created_ms")),
			TraceParent: m["traceparent"],
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
	}
	if m["models"] != "" {
		st.Models = strings.Split(m["models"], ",")
	}
	if ms := atoi64("finished_ms"); ms > 0 {
		st.FinishedAt = time.UnixMilli(ms)
	}
	return st, nil
}

var completeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0, 0} end
local held = redis.call('HGET', KEYS[3], ARGV[1])
if held then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'reserved_micro', 0 - tonumber(held))
end
local added = redis.call('SADD', KEYS[2], ARGV[1])
if added == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
  if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[1], 'cached', 1) end
  redis.call('HINCRBY', KEYS[1], 'cost_micro', ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
local done = redis.call('SCARD', KEYS[2])
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
return {added, done, total}
`)

// Progress is what Complete observed.
type Progress struct {
	// Counted is false when the task had already been counted (a redelivery).
	Counted bool
	// Done and Total are the run's terminal and total task counts.
	Done, Total int
}

// Complete reports whether the run has no task left.
func (p Progress) Complete() bool { return p.Total > 0 && p.Done >= p.Total }

// Complete counts a task's terminal state exactly once, adds its cost, frees
// its budget reservation, and returns the run's progress. Calling it again
// for the same task changes nothing.
func (s *Store) Complete(ctx context.Context, run, task string, status manifest.Status, cached bool, costUSD float64) (Progress, error) {
	c := "0"
	if cached {
		c = "1"
	}
	keys := []string{s.metaKey(run), s.doneKey(run), s.reservedKey(run)}
	args := []any{task, string(status), c, micro(costUSD), s.cfg.TTL.Milliseconds()}
	if s.cfg.WaitReplicas <= 0 {
		res, err := completeScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
		return s.progress(run, task, res, err)
	}
	var p Progress
	for try := 0; try < 2; try++ {
		pipe := s.rdb.Pipeline() // one connection: WAIT confirms the script's write
		cmd := completeScript.Eval(ctx, pipe, keys, args...)
		wait := pipe.Do(ctx, "WAIT", s.cfg.WaitReplicas, s.cfg.WaitTimeout.Milliseconds())
		_, _ = pipe.Exec(ctx)
		res, err := cmd.Int64Slice()
		again, err := s.progress(run, task, res, err)
		if err != nil {
			return Progress{}, err
		}
		again.Counted = again.Counted || p.Counted
		p = again
		if n, err := wait.Int64(); err == nil && n >= int64(s.cfg.WaitReplicas) {
			break
		}
		if try == 0 {
			select {
			case <-ctx.Done():
				return p, nil // counted on this master; the queue redelivers if it was lost
			case <-time.After(s.cfg.RecountAfter):
			}
		}
	}
	return p, nil
}

func (s *Store) progress(run, task string, res []int64, err error) (Progress, error) {
	if err != nil {
		return Progress{}, fmt.Errorf("runstate: complete %s/%s: %w", run, task, err)
	}
	if res[0] < 0 {
		return Progress{}, fmt.Errorf("runstate: complete %s/%s: %w", run, task, ErrNotFound)
	}
	return Progress{Counted: res[0] == 1, Done: int(res[1]), Total: int(res[2])}, nil
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
// state. It returns how many times the run has been finalized.
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
	n := pipe.HIncrBy(ctx, s.metaKey(run), "finalized", 1)
	pipe.HSet(ctx, s.metaKey(run), "state", string(state), "finished_ms", s.cfg.Now().UnixMilli())
	pipe.PExpire(ctx, s.metaKey(run), s.cfg.TTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("runstate: finalize %s: %w", st.ID, err)
	}
	return int(n.Val()), nil
}

// AppendAttempt adds one attempt to a task's history.
func (s *Store) AppendAttempt(ctx context.Context, run, task string, a manifest.Attempt) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("runstate: encode attempt: %w", err)
	}
	key := s.attemptsKey(run, task)
	pipe := s.rdb.Pipeline()
	pipe.RPush(ctx, key, b)
	pipe.PExpire(ctx, key, s.cfg.TTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("runstate: append attempt %s/%s: %w", run, task, err)
	}
	return nil
}

// Attempts returns a task's attempt history, oldest first.
func (s *Store) Attempts(ctx context.Context, run, task string) ([]manifest.Attempt, error) {
	raw, err := s.rdb.LRange(ctx, s.attemptsKey(run, task), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("runstate: attempts %s/%s: %w", run, task, err)
	}
	out := make([]manifest.Attempt, 0, len(raw))
	for _, r := range raw {
		var a manifest.Attempt
		if err := json.Unmarshal([]byte(r), &a); err != nil {
			return nil, fmt.Errorf("runstate: decode attempt %s/%s: %w", run, task, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// List returns the ids of the most recent runs, newest first.
func (s *Store) List(ctx context.Context, limit int64) ([]string, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.indexKey(), 0, limit-1).Result()
	if err != nil {
		return nil, fmt.Errorf("runstate: list: %w", err)
	}
	return ids, nil
}

var reserveScript = redis.NewScript(`
local budget = tonumber(redis.call('HGET', KEYS[1], 'budget_micro') or '0')
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local want = tonumber(ARGV[2])
if budget > 0 then
  local cost = tonumber(redis.call('HGET', KEYS[1], 'cost_micro') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved_micro') or '0')
  if cost + reserved - old + want > budget then return 0 end
end
redis.call('HSET', KEYS[2], ARGV[1], want)
redis.call('HINCRBY', KEYS[1], 'reserved_micro', want - old)
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
`)

// Reserve sets aside a task's estimated cost against the run's budget before
// the provider is called. It returns false, reserving nothing, when the
// spent and reserved amounts plus this one would pass the budget. A task
// holds at most one reservation: reserving again replaces it, so a
// redelivered task does not reserve twice. Runs without a budget always
// succeed.
func (s *Store) Reserve(ctx context.Context, run, task string, usd float64) (bool, error) {
	ok, err := reserveScript.Run(ctx, s.rdb, []string{s.metaKey(run), s.reservedKey(run)},
		task, micro(usd), s.cfg.TTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("runstate: reserve %s/%s: %w", run, task, err)
	}
	return ok == 1, nil
}

var releaseScript = redis.NewScript(`
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'reserved_micro', 0 - tonumber(held))
end
return 1
`)

// Release frees a task's reservation after an attempt that cost nothing.
func (s *Store) Release(ctx context.Context, run, task string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.metaKey(run), s.reservedKey(run)}, task).Err(); err != nil {
		return fmt.Errorf("runstate: release %s/%s: %w", run, task, err)
	}
	return nil
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

var reopenScript = redis.NewScript(`
if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[2], -1)
  redis.call('HINCRBY', KEYS[1], 'cost_micro', ARGV[3])
end
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[1], 'state', 'running', 'finalized', 0)
redis.call('HDEL', KEYS[1], 'finished_ms')
return 1
`)

// Reopen takes a task's terminal state back so it can run again (`likeness
// retry`): it leaves the finished set, its counter and cost are undone, its
// attempt history starts afresh, and the run counts as not finalized until
// the fan-in runs again.
func (s *Store) Reopen(ctx context.Context, run, task string, status manifest.Status, costUSD float64) error {
	err := reopenScript.Run(ctx, s.rdb, []string{s.metaKey(run), s.doneKey(run), s.attemptsKey(run, task)},
		task, string(status), -micro(costUSD)).Err()
	if err != nil {
		return fmt.Errorf("runstate: reopen %s/%s: %w", run, task, err)
	}
	return nil
}

// ResumeProviders forgets the run's billing stops, for a retry after the
// account was topped up.
func (s *Store) ResumeProviders(ctx context.Context, run string) error {
	if err := s.rdb.Del(ctx, s.stoppedKey(run)).Err(); err != nil {
		return fmt.Errorf("runstate: resume providers %s: %w", run, err)
	}
	return nil
}
