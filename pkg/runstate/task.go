package runstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/pkg/manifest"
)

// A task's state in Redis, from its first delivery to its terminal count:
//
//   - attempts: every provider attempt, appended by RecordAttempt, which
//     also charges what the attempt was billed to the run and frees the
//     task's budget reservation in the same step;
//   - pending: the provider request the current attempt has open (a paid
//     asynchronous prediction), recorded before the worker waits on it, so
//     a redelivery resumes it instead of paying for another;
//   - reservation: the list price set aside before a provider call;
//   - infra: when infrastructure faults began failing the task, so their
//     retries are bounded by wall-clock time, not by a count;
//   - settling: set while the terminal record is written.
//
// Complete counts the terminal status once and drops all of that: a finished
// task keeps one field in Redis, its status; its record in the store holds
// the attempt log.

// Pending is the provider request a task's current attempt has open.
type Pending struct {
	// Attempt is the attempt number (1-based, over the task's whole
	// history) the request belongs to.
	Attempt int `json:"attempt"`
	// Seed is the seed the request was made with.
	Seed int64 `json:"seed"`
	// Request identifies the request to the provider's adapter (a
	// provider.Pending, kept opaque here).
	Request json.RawMessage `json:"request"`
}

// TaskState is everything a worker needs to know about a task before it
// acts, read in one round trip.
type TaskState struct {
	// Status is the task's counted terminal status; "" while it is open.
	Status manifest.Status
	// Done and Total are the run's terminal and total task counts.
	Done, Total int
	// Settling is the tag MarkSettling set when a delivery began writing
	// the task's terminal record and may have stopped before counting it;
	// "" otherwise.
	Settling string
	// Canceled and Paused are the run's control flags.
	Canceled, Paused bool
	// Stopped is why the task's provider was stopped for the run (a
	// billing failure); "" when it was not.
	Stopped string
	// BudgetUSD is the run's budget (0: none).
	BudgetUSD float64
	// Attempts is the task's history, oldest first; the first Base of them
	// came before a retry and count in its cost, not in its retry budgets.
	Attempts []manifest.Attempt
	Base     int
	// Pending is the open provider request of the current attempt, if any.
	Pending *Pending
	// InfraSince is when infrastructure faults began failing the task
	// (zero: they have not), InfraErr the latest of them.
	InfraSince time.Time
	InfraErr   string
	// InfraRetryFor is the run's limit on retrying infrastructure faults.
	InfraRetryFor time.Duration
}

// Task reads a task's state, and the run's flags that concern it, in one
// round trip. provider names the task's provider, for its billing stop.
func (s *Store) Task(ctx context.Context, run, task, provider string) (*TaskState, error) {
	pipe := s.rdb.Pipeline()
	meta := pipe.HMGet(ctx, s.metaKey(run), "total", "canceled", "paused", "infra_retry_ms", "budget_micro")
	status := pipe.HGet(ctx, s.statusKey(run), task)
	done := pipe.HLen(ctx, s.statusKey(run))
	settling := pipe.HGet(ctx, s.settlingKey(run), task)
	stopped := pipe.HGet(ctx, s.stoppedKey(run), provider)
	attempts := pipe.LRange(ctx, s.attemptsKey(run, task), 0, -1)
	base := pipe.HGet(ctx, s.baseKey(run), task)
	pending := pipe.HGet(ctx, s.pendingKey(run), task)
	infra := pipe.HMGet(ctx, s.infraKey(run), task, task+":err")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("runstate: task %s/%s: %w", run, task, err)
	}
	m := meta.Val()
	if m[0] == nil {
		return nil, fmt.Errorf("runstate: task %s/%s: %w", run, task, ErrNotFound)
	}
	str := func(v any) string { x, _ := v.(string); return x }
	num := func(v any) int64 { n, _ := strconv.ParseInt(str(v), 10, 64); return n }
	st := &TaskState{
		Status:        manifest.Status(status.Val()),
		Done:          int(done.Val()),
		Total:         int(num(m[0])),
		Settling:      settling.Val(),
		Canceled:      str(m[1]) == "1",
		Paused:        str(m[2]) == "1",
		Stopped:       stopped.Val(),
		BudgetUSD:     float64(num(m[4])) / 1e6,
		InfraRetryFor: cmpOr(time.Duration(num(m[3]))*time.Millisecond, DefaultInfraRetryFor),
		InfraErr:      str(infra.Val()[1]),
	}
	if ms := num(infra.Val()[0]); ms > 0 {
		st.InfraSince = time.UnixMilli(ms)
	}
	st.Base, _ = strconv.Atoi(base.Val())
	for _, r := range attempts.Val() {
		var a manifest.Attempt
		if err := json.Unmarshal([]byte(r), &a); err != nil {
			return nil, fmt.Errorf("runstate: decode attempt of %s/%s: %w", run, task, err)
		}
		st.Attempts = append(st.Attempts, a)
	}
	if raw := pending.Val(); raw != "" {
		var p Pending
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			return nil, fmt.Errorf("runstate: decode pending request of %s/%s: %w", run, task, err)
		}
		st.Pending = &p
	}
	return st, nil
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

// chargeAttemptLua appends attempt ARGV[2] to the task's log KEYS[2],
// charges its cost ARGV[4] to the run KEYS[1], frees the task's budget
// reservation (KEYS[3]) and drops its open request (KEYS[4]) and
// infrastructure note (KEYS[5]). RecordAttempt and RecordOutput run it
// when the attempt (number ARGV[3]) is not recorded yet.
const chargeAttemptLua = `
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
local cost = tonumber(ARGV[4])
if cost > 0 then redis.call('HINCRBY', KEYS[1], 'cost_micro', cost) end
local held = redis.call('HGET', KEYS[3], ARGV[1])
if held then
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'reserved_micro', 0 - tonumber(held))
end
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1], ARGV[1] .. ':err')
`

var recordAttemptScript = redis.NewScript(`
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
` + chargeAttemptLua + `
return 1
`)

// RecordAttempt appends attempt a (a.N is its 1-based number over the
// task's history) and, in the same step, charges a.CostUSD (what the
// provider billed for it) to the run, frees the task's budget reservation
// and forgets its pending request and its infrastructure faults (the
// provider was reached: the task is moving). Recording an attempt number that is
// already recorded changes nothing and returns false: a redelivery after a
// crash never charges twice.
func (s *Store) RecordAttempt(ctx context.Context, run, task string, a manifest.Attempt) (bool, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return false, fmt.Errorf("runstate: encode attempt: %w", err)
	}
	n, err := recordAttemptScript.Run(ctx, s.rdb,
		[]string{s.metaKey(run), s.attemptsKey(run, task), s.reservedKey(run), s.pendingKey(run), s.infraKey(run)},
		task, b, a.N, micro(a.CostUSD), s.cfg.TTL.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("runstate: record attempt %d of %s/%s: %w", a.N, run, task, err)
	}
	return n == 1, nil
}

// SetPending records the provider request the task's current attempt has
// open, before the worker waits on it.
func (s *Store) SetPending(ctx context.Context, run, task string, p Pending) error {
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("runstate: encode pending request: %w", err)
	}
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, s.pendingKey(run), task, b)
	pipe.PExpire(ctx, s.pendingKey(run), s.cfg.TTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("runstate: record pending request of %s/%s: %w", run, task, err)
	}
	return nil
}

// ClearPending forgets the task's open request (the provider no longer has it).
func (s *Store) ClearPending(ctx context.Context, run, task string) error {
	if err := s.rdb.HDel(ctx, s.pendingKey(run), task).Err(); err != nil {
		return fmt.Errorf("runstate: clear pending request of %s/%s: %w", run, task, err)
	}
	return nil
}

var noteInfraScript = redis.NewScript(`
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1] .. ':err', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return redis.call('HGET', KEYS[1], ARGV[1])
`)

// NoteInfra records that an infrastructure fault failed a delivery of the
// task and returns when such faults began failing it.
func (s *Store) NoteInfra(ctx context.Context, run, task string, cause error) (time.Time, error) {
	ms, err := noteInfraScript.Run(ctx, s.rdb, []string{s.infraKey(run)},
		task, s.cfg.Now().UnixMilli(), truncate(cause.Error(), 512), s.cfg.TTL.Milliseconds()).Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("runstate: note infrastructure fault of %s/%s: %w", run, task, err)
	}
	return time.UnixMilli(ms), nil
}

// MarkSettling records that the task's terminal record, which tag
// identifies, is being written: a delivery that finds the mark and no count
// reads the record and, if it is the tagged one (not one a retry left from
// before), counts it.
func (s *Store) MarkSettling(ctx context.Context, run, task, tag string) error {
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, s.settlingKey(run), task, tag)
	pipe.PExpire(ctx, s.settlingKey(run), s.cfg.TTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("runstate: mark %s/%s settling: %w", run, task, err)
	}
	return nil
}

var completeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0, 0} end
local task = ARGV[1]
local held = redis.call('HGET', KEYS[3], task)
if held then
  redis.call('HDEL', KEYS[3], task)
  redis.call('HINCRBY', KEYS[1], 'reserved_micro', 0 - tonumber(held))
end
local added = redis.call('HSETNX', KEYS[2], task, ARGV[2])
if added == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
  if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[1], 'cached', 1) end
  local cost = tonumber(ARGV[4])
  if cost > 0 then redis.call('HINCRBY', KEYS[1], 'cost_micro', cost) end
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
redis.call('HDEL', KEYS[4], task)
redis.call('HDEL', KEYS[5], task)
redis.call('HDEL', KEYS[6], task, task .. ':err')
redis.call('HDEL', KEYS[7], task)
redis.call('DEL', KEYS[8])
if #KEYS >= 9 and redis.call('GET', KEYS[9]) == ARGV[6] then redis.call('DEL', KEYS[9]) end
local done = redis.call('HLEN', KEYS[2])
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
return {added, done, total}
`)

// Progress is what Complete observed.
type Progress struct {
	// Counted is false when the task had already been counted (a redelivery).
	Counted bool
	// Done and Total are the run's terminal and total task counts.
	Done, Total int
	// FoldBatch, when not 0, says that the record Finish pushed completed
	// the run's fold batch of that number: the caller enqueues its
	// run:fold task (task.NewFold).
	FoldBatch int64
}

// Complete reports whether the run has no task left.
func (p Progress) Complete() bool { return p.Total > 0 && p.Done >= p.Total }

// Complete counts a task's terminal status exactly once, frees its budget
// reservation, drops the rest of its per-task state (its record holds the
// attempt log) and returns the run's progress. extraUSD is cost to charge
// that RecordAttempt did not (normally 0: attempts are charged as they
// happen). Calling it again for the same task changes nothing.
func (s *Store) Complete(ctx context.Context, run, task string, status manifest.Status, cached bool, extraUSD float64) (Progress, error) {
	c := "0"
	if cached {
		c = "1"
	}
	keys := []string{s.metaKey(run), s.statusKey(run), s.reservedKey(run), s.pendingKey(run),
		s.settlingKey(run), s.infraKey(run), s.baseKey(run), s.attemptsKey(run, task)}
	args := []any{task, string(status), c, micro(extraUSD), s.cfg.TTL.Milliseconds()}
	if s.cfg.WaitReplicas <= 0 {
		res, err := completeScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
		return progress(run, task, res, err)
	}
	return s.completeReplicated(ctx, run, task, keys, args)
}

// completeReplicated is Complete with WaitReplicas: the count is confirmed
// on the replicas (WAIT on the script's connection) or made again after
// RecountAfter, on the master the client follows by then.
func (s *Store) completeReplicated(ctx context.Context, run, task string, keys []string, args []any) (Progress, error) {
	var p Progress
	for try := 0; try < 2; try++ {
		pipe := s.rdb.Pipeline() // one connection: WAIT confirms the script's write
		cmd := completeScript.Eval(ctx, pipe, keys, args...)
		wait := pipe.Do(ctx, "WAIT", s.cfg.WaitReplicas, s.cfg.WaitTimeout.Milliseconds())
		_, _ = pipe.Exec(ctx)
		res, err := cmd.Int64Slice()
		again, err := progress(run, task, res, err)
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

func progress(run, task string, res []int64, err error) (Progress, error) {
	if err != nil {
		return Progress{}, fmt.Errorf("runstate: complete %s/%s: %w", run, task, err)
	}
	if res[0] < 0 {
		return Progress{}, fmt.Errorf("runstate: complete %s/%s: %w", run, task, ErrNotFound)
	}
	return Progress{Counted: res[0] == 1, Done: int(res[1]), Total: int(res[2])}, nil
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

// Reserve sets aside a task's list price against the run's budget before
// the provider is called. It returns false, reserving nothing, when what
// the run was billed plus what is reserved plus this would pass the budget.
// A task holds at most one reservation: reserving again replaces it, so a
// redelivered task does not reserve twice. RecordAttempt turns the
// reservation into the billed cost. Runs without a budget always succeed.
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

// Release frees a task's reservation when no provider request was made
// with it (the task was requeued before the call).
func (s *Store) Release(ctx context.Context, run, task string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.metaKey(run), s.reservedKey(run)}, task).Err(); err != nil {
		return fmt.Errorf("runstate: release %s/%s: %w", run, task, err)
	}
	return nil
}

var reopenScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[2], ARGV[1])
if not st then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[1], st, -1)
redis.call('DEL', KEYS[3])
if #ARGV > 2 then
  redis.call('RPUSH', KEYS[3], unpack(ARGV, 3))
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
redis.call('HSET', KEYS[4], ARGV[1], #ARGV - 2)
redis.call('PEXPIRE', KEYS[4], ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'running', 'finalized', 0)
redis.call('HDEL', KEYS[1], 'finished_ms')
return 1
`)

// Reopen takes a task's terminal status back so it can run again (a retry,
// or the spec submitted again): its counter is undone, its history (from
// its record) is restored as the attempts before the retry, so they stay
// in its cost but not in its retry budgets, and the run counts as not
// finalized until the fan-in runs again. What the run was billed stays
// billed. It returns false when the task was not terminal.
func (s *Store) Reopen(ctx context.Context, run, task string, history []manifest.Attempt) (bool, error) {
	args := []any{task, s.cfg.TTL.Milliseconds()}
	for _, a := range history {
		b, err := json.Marshal(a)
		if err != nil {
			return false, fmt.Errorf("runstate: encode attempt: %w", err)
		}
		args = append(args, b)
	}
	n, err := reopenScript.Run(ctx, s.rdb,
		[]string{s.metaKey(run), s.statusKey(run), s.attemptsKey(run, task), s.baseKey(run)}, args...).Int()
	if err != nil {
		return false, fmt.Errorf("runstate: reopen %s/%s: %w", run, task, err)
	}
	return n == 1, nil
}

// Tasks returns the run's terminal tasks whose status is one of statuses.
func (s *Store) Tasks(ctx context.Context, run string, statuses ...manifest.Status) ([]string, error) {
	want := map[string]bool{}
	for _, st := range statuses {
		want[string(st)] = true
	}
	var out []string
	iter := s.rdb.HScan(ctx, s.statusKey(run), 0, "", 1000).Iterator()
	for i := 0; iter.Next(ctx); i++ {
		task := iter.Val()
		if !iter.Next(ctx) {
			break
		}
		if want[iter.Val()] {
			out = append(out, task)
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("runstate: tasks of %s: %w", run, err)
	}
	return out, nil
}

// Reopened returns the run's tasks that were reopened for a retry and have
// not reached a terminal state since: queued, working, or (if the retry
// stopped between reopening and enqueueing them) waiting to be enqueued.
func (s *Store) Reopened(ctx context.Context, run string) ([]string, error) {
	pipe := s.rdb.Pipeline()
	base := pipe.HKeys(ctx, s.baseKey(run))
	status := pipe.HKeys(ctx, s.statusKey(run))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("runstate: reopened tasks of %s: %w", run, err)
	}
	done := map[string]bool{}
	for _, t := range status.Val() {
		done[t] = true
	}
	var out []string
	for _, t := range base.Val() {
		if !done[t] {
			out = append(out, t)
		}
	}
	return out, nil
}

var reviveScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], 'canceled')
local want = tonumber(ARGV[1])
if want >= 0 then
  local budget = tonumber(redis.call('HGET', KEYS[1], 'budget_micro') or '0')
  if budget > 0 and (want == 0 or want > budget) then
    redis.call('HSET', KEYS[1], 'budget_micro', want)
  end
end
return 1
`)

// Revive prepares a run for its tasks to run again: the cancel is lifted
// and, when budgetUSD is not negative, the budget is raised to it if that
// is higher (0 removes it), as submitting the spec again with a larger
// budget_usd asks. A budget is never lowered: money already reserved for
// tasks in flight stays covered.
func (s *Store) Revive(ctx context.Context, run string, budgetUSD float64) error {
	n, err := reviveScript.Run(ctx, s.rdb, []string{s.metaKey(run)}, micro(budgetUSD)).Int()
	if err != nil {
		return fmt.Errorf("runstate: revive %s: %w", run, err)
	}
	if n == 0 {
		return fmt.Errorf("runstate: revive %s: %w", run, ErrNotFound)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// claimKey holds the delivery working on a task right now.
func (s *Store) claimKey(run, task string) string { return s.metaKey(run) + ":claim:" + task }

// Claim makes holder the one delivery working on a task, for ttl; it
// returns false when another live delivery holds it. A delivery keeps its
// claim with KeepClaim while it works and drops it with ReleaseClaim; a
// dead worker's claim lapses after ttl, which is how the fleet tells a task
// stranded in the queue by a killed worker (see the worker's rescue) from
// one being worked.
func (s *Store) Claim(ctx context.Context, run, task, holder string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.claimKey(run, task), holder, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("runstate: claim %s/%s: %w", run, task, err)
	}
	return ok, nil
}

var keepClaimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// KeepClaim extends holder's claim on a task by ttl; false if it lapsed.
func (s *Store) KeepClaim(ctx context.Context, run, task, holder string, ttl time.Duration) (bool, error) {
	n, err := keepClaimScript.Run(ctx, s.rdb, []string{s.claimKey(run, task)}, holder, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("runstate: keep claim %s/%s: %w", run, task, err)
	}
	return n == 1, nil
}

var releaseClaimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// ReleaseClaim drops holder's claim on a task.
func (s *Store) ReleaseClaim(ctx context.Context, run, task, holder string) error {
	if err := releaseClaimScript.Run(ctx, s.rdb, []string{s.claimKey(run, task)}, holder).Err(); err != nil {
		return fmt.Errorf("runstate: release claim %s/%s: %w", run, task, err)
	}
	return nil
}

// Claimed reports whether a live delivery holds the task.
func (s *Store) Claimed(ctx context.Context, run, task string) (bool, error) {
	n, err := s.rdb.Exists(ctx, s.claimKey(run, task)).Result()
	if err != nil {
		return false, fmt.Errorf("runstate: claimed %s/%s: %w", run, task, err)
	}
	return n == 1, nil
}

// TryLock takes a fleet-wide lock named name for ttl, unless another holder
// has it: one process of the fleet does a periodic job per period.
func (s *Store) TryLock(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.cfg.Prefix+":lock:"+name, holder, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("runstate: lock %s: %w", name, err)
	}
	return ok, nil
}

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Unlock drops holder's lock named name, if it still has it.
func (s *Store) Unlock(ctx context.Context, name, holder string) {
	_ = unlockScript.Run(ctx, s.rdb, []string{s.cfg.Prefix + ":lock:" + name}, holder).Err() // it lapses by itself otherwise
}

// MarkOnce records key for ttl and reports whether it was new: an
// idempotency guard for fleet-wide actions (one rescue per stranded task).
func (s *Store) MarkOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.cfg.Prefix+":once:"+key, 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("runstate: mark %s: %w", key, err)
	}
	return ok, nil
}

// suspectsKey maps queue task ids seen working without a claim to when
// they were first seen so.
func (s *Store) suspectsKey() string { return s.cfg.Prefix + ":rescue:suspects" }

// Suspect records that a queue task was seen active with no delivery
// claiming it, and returns when it was first seen so.
func (s *Store) Suspect(ctx context.Context, id string) (time.Time, error) {
	pipe := s.rdb.TxPipeline()
	pipe.HSetNX(ctx, s.suspectsKey(), id, s.cfg.Now().UnixMilli())
	first := pipe.HGet(ctx, s.suspectsKey(), id)
	pipe.PExpire(ctx, s.suspectsKey(), time.Hour)
	if _, err := pipe.Exec(ctx); err != nil {
		return time.Time{}, fmt.Errorf("runstate: suspect %s: %w", id, err)
	}
	ms, _ := strconv.ParseInt(first.Val(), 10, 64)
	return time.UnixMilli(ms), nil
}

// Unsuspect forgets queue task ids that were seen claimed, or rescued.
func (s *Store) Unsuspect(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	if err := s.rdb.HDel(ctx, s.suspectsKey(), ids...).Err(); err != nil {
		return fmt.Errorf("runstate: unsuspect: %w", err)
	}
	return nil
}
