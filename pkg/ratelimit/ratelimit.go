// Package ratelimit holds the limits every worker in the fleet shares, in
// Redis: a request rate (GCRA, via redis_rate), a concurrency cap made of
// leases that expire when their holder dies, a cooldown-until that any
// worker sets from a provider's 429 so the whole fleet waits, and a circuit
// breaker that a run of transient failures opens.
//
// In the task lifecycle (design.md step 4) the worker calls Acquire before
// each provider call. Acquire either grants a Lease, which the worker keeps
// alive during the call and releases after it, or says how long to wait:
// the worker waits in place for short waits and requeues the task for long
// ones, in both cases without spending a retry.
package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/likeness-run/likeness/pkg/provider"
)

// Limit is one limit key's configuration. Zero fields mean "no limit" for
// that dimension.
type Limit struct {
	// Key names the limit; every model that shares a provider limit uses
	// the same key (see provider.Limits.Key).
	Key string
	// RequestsPerMinute caps request starts across the fleet.
	RequestsPerMinute int
	// Concurrency caps requests in flight across the fleet.
	Concurrency int
	// Breaker tunes the key's circuit breaker.
	Breaker BreakerConfig
}

// Config configures a Limiter.
type Config struct {
	// Prefix namespaces every key. Default "likeness:limit".
	Prefix string
	// LeaseTTL is how long a concurrency slot outlives its holder's last
	// heartbeat (it beats every LeaseTTL/3); a killed worker's slots come
	// back after it. Default 5s: a fleet losing a worker every few seconds
	// would otherwise run with a share of its slots held by the dead.
	LeaseTTL time.Duration
	// Margin slows the request rate by this fraction so that network jitter
	// between a grant and the provider's own count never tips a window over
	// the limit. Default 0.01 (1%).
	Margin float64
	// Reserve keeps this fraction of each rate limit ungranted, for grants
	// a failover loses: behind Sentinel the old master's last writes (up to
	// about a second of them) never reach the new one, which then grants
	// those requests again. Default 0 (one server, Cluster).
	Reserve float64
	// MinWait is the shortest wait reported when a concurrency slot is
	// busy (the time a slot frees is unknown); waits are at most 4×MinWait,
	// so a freed slot is taken within that. Default 20ms.
	MinWait time.Duration
	// Now is the clock for lease expiry. Default time.Now.
	Now func() time.Time
	// WaitReplicas, above 0, makes Release confirm (WAIT) that this many
	// replicas received the freed slot. Behind Sentinel a failover loses
	// what the old master took in its last moments; a lost release would
	// hold its slot until the lease expires and run the fleet below its
	// cap meanwhile. A release the replicas did not confirm is made again
	// after RereleaseAfter, on whichever master the client follows by then
	// (releasing is idempotent). Default 0: no confirmation (one server,
	// Cluster). Needs a client of one master.
	WaitReplicas int
	// WaitTimeout bounds each WAIT. Default 100ms.
	WaitTimeout time.Duration
	// RereleaseAfter is the pause before releasing again, in the
	// background: long enough for the client to follow Sentinel to the new
	// master. Default 1s.
	RereleaseAfter time.Duration
}

// Limiter acquires fleet-wide limits.
type Limiter struct {
	rdb  redis.UniversalClient
	rate *redis_rate.Limiter
	cfg  Config

	rereleases sync.WaitGroup // background re-releases (WaitReplicas)
	closed     chan struct{}
	closeOnce  sync.Once
}

// New returns a Limiter over rdb.
func New(rdb redis.UniversalClient, cfg Config) *Limiter {
	if cfg.Prefix == "" {
		cfg.Prefix = "likeness:limit"
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 5 * time.Second
	}
	if cfg.Margin <= 0 {
		cfg.Margin = 0.01
	}
	if cfg.MinWait <= 0 {
		cfg.MinWait = 20 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 100 * time.Millisecond
	}
	if cfg.RereleaseAfter <= 0 {
		cfg.RereleaseAfter = time.Second
	}
	return &Limiter{rdb: rdb, rate: redis_rate.NewLimiter(rdb), cfg: cfg, closed: make(chan struct{})}
}

func (l *Limiter) key(lim, part string) string { return l.cfg.Prefix + ":{" + lim + "}:" + part }

// Reason says why Acquire did not grant a lease.
type Reason string

// Reasons for waiting.
const (
	Cooldown    Reason = "cooldown"
	Concurrency Reason = "concurrency"
	Rate        Reason = "rate"
	CircuitOpen Reason = "circuit_open"
)

// Wait is Acquire's answer when the limit is not available.
type Wait struct {
	For    time.Duration
	Reason Reason
}

// Lease is a granted request: it holds a concurrency slot (when the limit
// has one) until Release. Keep it alive during long calls with Keep.
type Lease struct {
	l      *Limiter
	key    string
	holder string
	slot   bool
	exp    atomic.Int64 // the slot's expiry (Unix ms) as last set
	once   sync.Once
	stop   chan struct{}
}

var acquireSlot = redis.NewScript(`
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return -1
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(first[2]) - now
`)

// Acquire checks the limit's cooldown and circuit, takes a concurrency slot
// and a request from the rate. It returns a Lease, or a Wait saying for how
// long the limit is unavailable and why. holder identifies the caller
// (worker and task), for debugging the slot set.
func (l *Limiter) Acquire(ctx context.Context, lim Limit, holder string) (*Lease, *Wait, error) {
	now := l.cfg.Now()
	if until, err := l.CooldownUntil(ctx, lim.Key); err != nil {
		return nil, nil, err
	} else if until.After(now) {
		return nil, &Wait{For: until.Sub(now), Reason: Cooldown}, nil
	}
	if wait, err := l.breaker(ctx, lim.Key, lim.Breaker); err != nil {
		return nil, nil, err
	} else if wait > 0 {
		return nil, &Wait{For: wait, Reason: CircuitOpen}, nil
	}
	lease := &Lease{l: l, key: lim.Key, holder: holder, stop: make(chan struct{})}
	if lim.Concurrency > 0 {
		ms, err := acquireSlot.Run(ctx, l.rdb, []string{l.key(lim.Key, "slots")},
			now.UnixMilli(), holder, lim.Concurrency, l.cfg.LeaseTTL.Milliseconds()).Int64()
		if err != nil {
			return nil, nil, fmt.Errorf("ratelimit: acquire slot %s: %w", lim.Key, err)
		}
		if ms >= 0 {
			// A slot frees when a holder releases it, at the latest when the
			// oldest lease expires; poll at MinWait until then.
			return nil, &Wait{For: max(l.cfg.MinWait, min(time.Duration(ms)*time.Millisecond, 4*l.cfg.MinWait)), Reason: Concurrency}, nil
		}
		lease.slot = true
		lease.exp.Store(now.UnixMilli() + l.cfg.LeaseTTL.Milliseconds())
	}
	if lim.RequestsPerMinute > 0 {
		res, err := l.rate.Allow(ctx, l.key(lim.Key, "rate"), l.gcra(lim.RequestsPerMinute))
		if err != nil {
			lease.Release(ctx)
			return nil, nil, fmt.Errorf("ratelimit: rate %s: %w", lim.Key, err)
		}
		if res.Allowed == 0 {
			lease.Release(ctx)
			return nil, &Wait{For: max(res.RetryAfter, time.Millisecond), Reason: Rate}, nil
		}
	}
	return lease, nil, nil
}

// gcra spaces requests evenly, slowed by Margin and Reserve. Its burst is
// the slack the margin leaves in a minute (b + R/(1+m+r) <= R less the
// reserve), at least one: a grant that comes late (a busy machine, a Redis
// round trip) is made up by the next ones instead of lost, and still no
// one-minute window holds more than the limit, even with R*r/(1+m+r)
// grants lost in a failover and made again.
func (l *Limiter) gcra(perMinute int) redis_rate.Limit {
	slow := 1 + l.cfg.Margin + l.cfg.Reserve
	period := time.Duration(float64(time.Minute) * slow)
	burst := int(float64(perMinute) * l.cfg.Margin / slow)
	return redis_rate.Limit{Rate: perMinute, Burst: max(1, burst), Period: period}
}

// Keep refreshes the lease's slot until Release, so a long provider call
// keeps its slot while a dead worker's slot expires after LeaseTTL.
func (le *Lease) Keep(ctx context.Context) {
	if le == nil || !le.slot {
		return
	}
	go func() {
		t := time.NewTicker(le.l.cfg.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-le.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				exp := le.l.cfg.Now().Add(le.l.cfg.LeaseTTL).UnixMilli()
				key := le.l.key(le.key, "slots")
				pipe := le.l.rdb.Pipeline()
				pipe.ZAddXX(ctx, key, redis.Z{Score: float64(exp), Member: le.holder})
				pipe.PExpire(ctx, key, le.l.cfg.LeaseTTL)
				if _, err := pipe.Exec(ctx); err == nil { // a missed refresh only shortens the lease
					le.exp.Store(exp)
				}
			}
		}
	}()
}

// Release returns the slot. It is safe to call more than once, and on a
// nil Lease (no limit applied).
func (le *Lease) Release(ctx context.Context) {
	if le == nil {
		return
	}
	le.once.Do(func() {
		close(le.stop)
		if le.slot {
			// The slot must come back even when the task's context is done.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			le.l.freeSlot(rctx, le.key, le.holder, le.exp.Load())
		}
	})
}

// freeSlot removes holder from the limit's slot set. With WaitReplicas it
// confirms the removal on the replicas; when they do not confirm it, the
// slot is freed again after RereleaseAfter, in the background (Close waits
// for it), unless the holder has taken a newer lease meanwhile (its expiry
// is past exp).
func (l *Limiter) freeSlot(ctx context.Context, lim, holder string, exp int64) {
	key := l.key(lim, "slots")
	if l.cfg.WaitReplicas <= 0 {
		l.rdb.ZRem(ctx, key, holder)
		return
	}
	pipe := l.rdb.Pipeline() // one connection: WAIT confirms the ZREM
	pipe.ZRem(ctx, key, holder)
	wait := pipe.Do(ctx, "WAIT", l.cfg.WaitReplicas, l.cfg.WaitTimeout.Milliseconds())
	_, _ = pipe.Exec(ctx)
	if n, err := wait.Int64(); err == nil && n >= int64(l.cfg.WaitReplicas) {
		return
	}
	l.rereleases.Add(1)
	go func() {
		defer l.rereleases.Done()
		t := time.NewTimer(l.cfg.RereleaseAfter)
		defer t.Stop()
		select {
		case <-l.closed: // Close: free it now, while the client is open
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = freeIfOlder.Run(rctx, l.rdb, []string{key}, holder, exp).Err()
	}()
}

var freeIfOlder = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
`)

// Close makes the background re-releases WaitReplicas starts at once and
// waits for them; call it before closing the Redis client. The Limiter is
// not usable after Close.
func (l *Limiter) Close() {
	l.closeOnce.Do(func() { close(l.closed) })
	l.rereleases.Wait()
}

// SetCooldown makes every worker wait until until before calling the
// limit's provider again. A later until wins over an earlier one.
func (l *Limiter) SetCooldown(ctx context.Context, key string, until time.Time) error {
	k := l.key(key, "cooldown")
	ms := until.UnixMilli()
	ttl := time.Until(until) + time.Second
	if ttl <= 0 {
		return nil
	}
	err := setMax.Run(ctx, l.rdb, []string{k}, ms, ttl.Milliseconds()).Err()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("ratelimit: cooldown %s: %w", key, err)
	}
	return nil
}

var setMax = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
`)

// CooldownUntil returns when the limit's cooldown ends (zero if none).
func (l *Limiter) CooldownUntil(ctx context.Context, key string) (time.Time, error) {
	v, err := l.rdb.Get(ctx, l.key(key, "cooldown")).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("ratelimit: cooldown %s: %w", key, err)
	}
	ms, _ := strconv.ParseInt(v, 10, 64)
	return time.UnixMilli(ms), nil
}

// InFlight returns how many slots of the limit are held now.
func (l *Limiter) InFlight(ctx context.Context, key string) (int, error) {
	n, err := l.rdb.ZCount(ctx, l.key(key, "slots"), strconv.FormatInt(l.cfg.Now().UnixMilli(), 10), "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("ratelimit: in flight %s: %w", key, err)
	}
	return int(n), nil
}

// Interval is the spacing between request starts that a rate allows,
// margin included.
func (l *Limiter) Interval(perMinute int) time.Duration {
	if perMinute <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(float64(time.Minute) * (1 + l.cfg.Margin) / float64(perMinute)))
}

// Overrides are operator limits that replace the registry's defaults, by
// limit key, as read from a limits file:
//
//	limits:
//	  replicate: {requests_per_minute: 600, concurrency: 50}
//	  bfl:flux-kontext-max: {concurrency: 6}
type Overrides map[string]Limit

// ParseOverrides reads a limits file.
func ParseOverrides(data []byte) (Overrides, error) {
	var doc struct {
		Limits map[string]struct {
			RequestsPerMinute *int `yaml:"requests_per_minute"`
			Concurrency       *int `yaml:"concurrency"`
		} `yaml:"limits"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("limits file: %w", err)
	}
	out := Overrides{}
	for key, v := range doc.Limits {
		lim := Limit{Key: key}
		if v.RequestsPerMinute != nil {
			if *v.RequestsPerMinute < 0 {
				return nil, fmt.Errorf("limits file: %s: requests_per_minute must not be negative", key)
			}
			lim.RequestsPerMinute = *v.RequestsPerMinute
		}
		if v.Concurrency != nil {
			if *v.Concurrency < 0 {
				return nil, fmt.Errorf("limits file: %s: concurrency must not be negative", key)
			}
			lim.Concurrency = *v.Concurrency
		}
		out[key] = lim
	}
	return out, nil
}

// For returns the limit in force for a model: an override keyed by the
// model's ref (a model limited on its own), else an override for its limit
// key, else the registry's default.
func For(m provider.Model, o Overrides) Limit {
	if l, ok := o[m.Ref]; ok {
		l.Key = m.Ref
		return l
	}
	key := m.Limits.Key
	if key == "" {
		key = m.Provider
	}
	if l, ok := o[key]; ok {
		l.Key = key
		return l
	}
	return Limit{Key: key, RequestsPerMinute: m.Limits.RequestsPerMinute, Concurrency: m.Limits.Concurrency}
}

// State is a limit's live state, for status displays.
type State struct {
	InFlight      int
	CooldownUntil time.Time
	// Failures counts consecutive transient failures; OpenUntil is set
	// while the circuit is open.
	Failures  int
	OpenUntil time.Time
}

// State reads a limit's live state.
func (l *Limiter) State(ctx context.Context, key string) (State, error) {
	var st State
	var err error
	if st.InFlight, err = l.InFlight(ctx, key); err != nil {
		return st, err
	}
	if st.CooldownUntil, err = l.CooldownUntil(ctx, key); err != nil {
		return st, err
	}
	vals, err := l.rdb.MGet(ctx, l.key(key, "cb:fails"), l.key(key, "cb:open")).Result()
	if err != nil {
		return st, fmt.Errorf("ratelimit: state %s: %w", key, err)
	}
	if s, ok := vals[0].(string); ok {
		st.Failures, _ = strconv.Atoi(s)
	}
	if s, ok := vals[1].(string); ok {
		ms, _ := strconv.ParseInt(s, 10, 64)
		if t := time.UnixMilli(ms); t.After(l.cfg.Now()) {
			st.OpenUntil = t
		}
	}
	return st, nil
}

var noteThrottle = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`)

// NoteThrottle counts a provider's 429 for key and returns how many it has
// answered within window (this one included), so a caller can tell a lone
// burst throttle from a limit the fleet keeps hitting.
func (l *Limiter) NoteThrottle(ctx context.Context, key string, window time.Duration) (int, error) {
	n, err := noteThrottle.Run(ctx, l.rdb, []string{l.key(key, "throttles")}, window.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("ratelimit: note throttle %s: %w", key, err)
	}
	return n, nil
}
