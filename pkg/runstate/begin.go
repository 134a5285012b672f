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

// A delivery's first round trip. Everything a worker must know and take
// before it may call a provider for a task (the claim on the task, the
// run's cancel and pause flags, the provider's billing stop, the task's
// attempt history and open request, the budget reservation, and whether
// the cache index knows the output) is read and taken in one pipeline: a
// Lua script over the run's keys (one Cluster slot) beside the cache
// index lookup (another slot, the same round trip).

// BeginRequest is what a delivery asks of Begin.
type BeginRequest struct {
	Run, Task string
	// Provider names the task's provider, for its billing stop.
	Provider string
	// Holder names the delivery; it claims the task for ClaimTTL.
	Holder   string
	ClaimTTL time.Duration
	// PriceUSD is the list price reserved for a fresh task (one with no
	// attempt, no open request, not canceled, paused, stopped or
	// settling); negative: reserve nothing.
	PriceUSD float64
	// ContentKey, when not empty, is looked up in the cache index.
	ContentKey string
	// CacheStore names the object store, to learn whether the cache index
	// was built for it (see CacheIndexed).
	CacheStore string
}

// Reservation is what Begin did about the budget.
type Reservation int

// Reservations.
const (
	// NotReserved: the task is not fresh, or no price was given; the
	// worker reserves itself (Reserve) if it goes on to call a provider.
	NotReserved Reservation = iota
	// Reserved: the price is set aside, as Reserve does.
	Reserved
	// OverBudget: the price would pass the run's budget; nothing reserved.
	OverBudget
)

// Begin is what a delivery learned and took in its first round trip.
type Begin struct {
	// Claimed is false when another live delivery holds the task; then
	// nothing else was read or taken.
	Claimed bool
	// State is the task's state, as Task reads it.
	State *TaskState
	// Reservation says whether the price was reserved.
	Reservation Reservation
	// Cache is where the cache index says the output for the content key
	// is described, when CacheHit.
	Cache    CacheRef
	CacheHit bool
	// CacheIndexed is whether the index was built for the object store
	// (false: a miss proves nothing; see CacheIndexed).
	CacheIndexed bool
}

var beginScript = redis.NewScript(`
local task = ARGV[1]
local m = redis.call('HMGET', KEYS[1], 'total', 'canceled', 'paused', 'infra_retry_ms', 'budget_micro', 'cost_micro', 'reserved_micro')
if not m[1] then return {-1} end
if not redis.call('SET', KEYS[10], ARGV[3], 'NX', 'PX', ARGV[4]) then
  if redis.call('GET', KEYS[10]) ~= ARGV[3] then return {0} end
  redis.call('PEXPIRE', KEYS[10], ARGV[4])
end
local status = redis.call('HGET', KEYS[2], task)
local done = redis.call('HLEN', KEYS[2])
local settling = redis.call('HGET', KEYS[3], task)
local stopped = redis.call('HGET', KEYS[4], ARGV[2])
local attempts = redis.call('LRANGE', KEYS[5], 0, -1)
local base = redis.call('HGET', KEYS[6], task)
local pending = redis.call('HGET', KEYS[7], task)
local infra = redis.call('HMGET', KEYS[8], task, task .. ':err')
local reserved = 0
local want = tonumber(ARGV[5])
if want >= 0 and not status and not settling and m[2] ~= '1' and m[3] ~= '1' and not stopped and #attempts == 0 and not pending then
  local budget = tonumber(m[5] or '0')
  local old = tonumber(redis.call('HGET', KEYS[9], task) or '0')
  if budget > 0 and tonumber(m[6] or '0') + tonumber(m[7] or '0') - old + want > budget then
    reserved = 2
  else
    redis.call('HSET', KEYS[9], task, want)
    redis.call('HINCRBY', KEYS[1], 'reserved_micro', want - old)
    redis.call('PEXPIRE', KEYS[9], ARGV[6])
    reserved = 1
  end
end
return {1, m[1], m[2] or '', m[3] or '', m[4] or '', m[5] or '', status or '', done, settling or '', stopped or '',
  attempts, base or '', pending or '', infra[1] or '', infra[2] or '', reserved}
`)

// Begin claims a task for a delivery and reads its state, reserving its
// price when it is fresh, and looks its content key up in the cache
// index, in one round trip. The claim works as Claim's (a claim this
// holder already has is kept), the reservation as Reserve's.
func (s *Store) Begin(ctx context.Context, r BeginRequest) (*Begin, error) {
	run, task := r.Run, r.Task
	keys := []string{s.metaKey(run), s.statusKey(run), s.settlingKey(run), s.stoppedKey(run), s.attemptsKey(run, task),
		s.baseKey(run), s.pendingKey(run), s.infraKey(run), s.reservedKey(run), s.claimKey(run, task)}
	price := int64(-1)
	if r.PriceUSD >= 0 {
		price = micro(r.PriceUSD)
	}
	args := []any{task, r.Provider, r.Holder, r.ClaimTTL.Milliseconds(), price, s.cfg.TTL.Milliseconds()}
	var cacheKey, cacheField string
	if r.ContentKey != "" {
		var err error
		if cacheKey, cacheField, err = s.cacheSlot(r.ContentKey); err != nil {
			return nil, err
		}
	}
	var (
		script  *redis.Cmd
		hit     *redis.StringCmd
		indexed *redis.BoolCmd
	)
	exec := func(eval func(redis.Pipeliner) *redis.Cmd) error {
		pipe := s.rdb.Pipeline()
		script = eval(pipe)
		if cacheKey != "" {
			// The mark first: on one server a mark read as set means
			// the lookup after it sees every rebuilt entry.
			indexed = pipe.HExists(ctx, s.cacheReadyKey(), r.CacheStore)
			hit = pipe.HGet(ctx, cacheKey, cacheField)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	err := exec(func(p redis.Pipeliner) *redis.Cmd { return beginScript.EvalSha(ctx, p, keys, args...) })
	if err != nil && redis.HasErrorPrefix(script.Err(), "NOSCRIPT") {
		err = exec(func(p redis.Pipeliner) *redis.Cmd { return beginScript.Eval(ctx, p, keys, args...) })
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("runstate: begin %s/%s: %w", run, task, err)
	}
	res, err := script.Slice()
	if err != nil || len(res) == 0 {
		return nil, fmt.Errorf("runstate: begin %s/%s: %w", run, task, cmpErr(err, errors.New("empty answer")))
	}
	b := &Begin{}
	switch n, _ := res[0].(int64); n {
	case -1:
		return nil, fmt.Errorf("runstate: task %s/%s: %w", run, task, ErrNotFound)
	case 0:
		return b, nil
	}
	if len(res) < 16 {
		return nil, fmt.Errorf("runstate: begin %s/%s: short answer (%d values)", run, task, len(res))
	}
	b.Claimed = true
	str := func(v any) string { x, _ := v.(string); return x }
	num := func(v any) int64 { n, _ := strconv.ParseInt(str(v), 10, 64); return n }
	done, _ := res[7].(int64)
	st := &TaskState{
		Total:         int(num(res[1])),
		Canceled:      str(res[2]) == "1",
		Paused:        str(res[3]) == "1",
		InfraRetryFor: cmpOr(time.Duration(num(res[4]))*time.Millisecond, DefaultInfraRetryFor),
		BudgetUSD:     float64(num(res[5])) / 1e6,
		Status:        manifest.Status(str(res[6])),
		Done:          int(done),
		Settling:      str(res[8]),
		Stopped:       str(res[9]),
		InfraErr:      str(res[14]),
	}
	st.Base, _ = strconv.Atoi(str(res[11]))
	if ms := num(res[13]); ms > 0 {
		st.InfraSince = time.UnixMilli(ms)
	}
	raw, _ := res[10].([]any)
	for _, r := range raw {
		var a manifest.Attempt
		if err := json.Unmarshal([]byte(str(r)), &a); err != nil {
			return nil, fmt.Errorf("runstate: decode attempt of %s/%s: %w", run, task, err)
		}
		st.Attempts = append(st.Attempts, a)
	}
	if p := str(res[12]); p != "" {
		var pend Pending
		if err := json.Unmarshal([]byte(p), &pend); err != nil {
			return nil, fmt.Errorf("runstate: decode pending request of %s/%s: %w", run, task, err)
		}
		st.Pending = &pend
	}
	b.State = st
	rv, _ := res[15].(int64)
	b.Reservation = Reservation(rv)
	if hit != nil {
		if v, err := hit.Result(); err == nil {
			b.Cache, b.CacheHit = parseCacheRef(v)
		}
		b.CacheIndexed = indexed.Val()
	}
	return b, nil
}

func cmpErr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}
