package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The circuit breaker is per limit key and lives in Redis, so one worker's
// run of transient failures (a provider outage) stops the whole fleet from
// burning attempts against it. Closed: requests flow; ReportTransient counts
// consecutive failures. At Threshold it opens for OpenFor: Acquire answers
// CircuitOpen. Then one caller is let through as a probe; its success
// closes the circuit, its failure opens it again for twice as long, up to
// MaxOpenFor. A provider back from an outage is found within about a
// second of a short blip and within MaxOpenFor of a long one. Rate answers
// (429) never count: they are the provider working as documented.

// BreakerConfig tunes the circuit breaker.
type BreakerConfig struct {
	// Threshold is the number of consecutive transient failures that opens
	// the circuit. Default 8.
	Threshold int
	// OpenFor is how long the circuit stays open before the first probe.
	// Default 1s.
	OpenFor time.Duration
	// MaxOpenFor caps the doubling of the open time after each failed
	// probe: a provider back from an outage is used again within it, and
	// a probe every few seconds costs nothing. Default 3s.
	MaxOpenFor time.Duration
}

func (b BreakerConfig) withDefaults() BreakerConfig {
	if b.Threshold <= 0 {
		b.Threshold = 8
	}
	if b.OpenFor <= 0 {
		b.OpenFor = time.Second
	}
	if b.MaxOpenFor < b.OpenFor {
		b.MaxOpenFor = max(3*time.Second, b.OpenFor)
	}
	return b
}

var breakerCheck = redis.NewScript(`
local fails = tonumber(redis.call('GET', KEYS[1]) or '0')
if fails < tonumber(ARGV[2]) then return -1 end
local openUntil = tonumber(redis.call('GET', KEYS[2]) or '0')
local now = tonumber(ARGV[1])
if openUntil > now then return openUntil - now end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[3]) then return -2 end
return tonumber(ARGV[4])
`)

// breaker returns how long the circuit keeps key closed to this caller:
// zero when the caller may proceed (closed, or the caller is the probe).
func (l *Limiter) breaker(ctx context.Context, key string, b BreakerConfig) (time.Duration, error) {
	b = b.withDefaults()
	ms, err := breakerCheck.Run(ctx, l.rdb,
		[]string{l.key(key, "cb:fails"), l.key(key, "cb:open"), l.key(key, "cb:probe")},
		l.cfg.Now().UnixMilli(), b.Threshold, b.OpenFor.Milliseconds(), (250 * time.Millisecond).Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("ratelimit: breaker %s: %w", key, err)
	}
	if ms < 0 {
		return 0, nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}

var breakerFail = redis.NewScript(`
local fails = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if fails >= tonumber(ARGV[2]) then
  local trips = redis.call('INCR', KEYS[4])
  redis.call('PEXPIRE', KEYS[4], ARGV[4])
  local open = tonumber(ARGV[3])
  for i = 2, trips do
    open = open * 2
    if open >= tonumber(ARGV[5]) then break end
  end
  open = math.min(open, tonumber(ARGV[5]))
  redis.call('SET', KEYS[2], tonumber(ARGV[1]) + open, 'PX', ARGV[4])
  redis.call('DEL', KEYS[3])
  return 1
end
return 0
`)

// ReportTransient counts a transient failure against key; it reports
// whether the circuit is now open.
func (l *Limiter) ReportTransient(ctx context.Context, key string, b BreakerConfig) (bool, error) {
	b = b.withDefaults()
	open, err := breakerFail.Run(ctx, l.rdb,
		[]string{l.key(key, "cb:fails"), l.key(key, "cb:open"), l.key(key, "cb:probe"), l.key(key, "cb:trips")},
		l.cfg.Now().UnixMilli(), b.Threshold, b.OpenFor.Milliseconds(), (10 * time.Minute).Milliseconds(),
		b.MaxOpenFor.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("ratelimit: breaker %s: %w", key, err)
	}
	return open == 1, nil
}

// ReportSuccess closes key's circuit and resets its failure count.
func (l *Limiter) ReportSuccess(ctx context.Context, key string) error {
	if err := l.rdb.Del(ctx, l.key(key, "cb:fails"), l.key(key, "cb:open"), l.key(key, "cb:probe"), l.key(key, "cb:trips")).Err(); err != nil {
		return fmt.Errorf("ratelimit: breaker %s: %w", key, err)
	}
	return nil
}
