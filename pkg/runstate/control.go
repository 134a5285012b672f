package runstate

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Run control: what an operator changes while a run works (`likeness pause`,
// `likeness resume`, the dashboard's actions). Pausing is a flag on the run
// that workers read before each task: a paused run's tasks go back in the
// queue after a short wait without spending an attempt, so no provider is
// called for the run until it is resumed. Tasks already calling a provider
// finish.

// ErrBudget is wrapped by SetBudget's refusals: the new budget is not above
// the current one, or the run has no budget to raise.
var ErrBudget = errors.New("budget can only be raised")

var pauseScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'paused', 1, 'paused_ms', ARGV[2])
else
  redis.call('HDEL', KEYS[1], 'paused', 'paused_ms')
end
return 1
`)

// Pause stops workers from starting the run's tasks until Resume. Pausing a
// paused run changes nothing but the time it was paused at.
func (s *Store) Pause(ctx context.Context, run string) error {
	return s.setPaused(ctx, run, true)
}

// Resume lets workers start the run's tasks again; requeued tasks come back
// within their short wait.
func (s *Store) Resume(ctx context.Context, run string) error {
	return s.setPaused(ctx, run, false)
}

func (s *Store) setPaused(ctx context.Context, run string, paused bool) error {
	op, flag := "resume", "0"
	if paused {
		op, flag = "pause", "1"
	}
	n, err := pauseScript.Run(ctx, s.rdb, []string{s.metaKey(run)}, flag, s.cfg.Now().UnixMilli()).Int()
	if err != nil {
		return fmt.Errorf("runstate: %s %s: %w", op, run, err)
	}
	if n < 0 {
		return fmt.Errorf("runstate: %s %s: %w", op, run, ErrNotFound)
	}
	return nil
}

// Paused reports whether the run is paused. An unknown run is not paused.
func (s *Store) Paused(ctx context.Context, run string) (bool, error) {
	v, err := s.rdb.HGet(ctx, s.metaKey(run), "paused").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("runstate: paused %s: %w", run, err)
	}
	return v == "1", nil
}

var setBudgetScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local old = tonumber(redis.call('HGET', KEYS[1], 'budget_micro') or '0')
if old <= 0 then return {-2, old} end
if tonumber(ARGV[1]) <= old then return {-3, old} end
redis.call('HSET', KEYS[1], 'budget_micro', ARGV[1])
return {1, old}
`)

// SetBudget raises the run's budget to usd. Only raising is allowed: a
// lower or equal budget, or a run submitted without a budget (unlimited),
// is refused with an error wrapping ErrBudget and nothing changes. Tasks
// not yet started are reserved against the new budget; tasks already
// skipped for the budget stay skipped until retried (`likeness retry`).
func (s *Store) SetBudget(ctx context.Context, run string, usd float64) error {
	res, err := setBudgetScript.Run(ctx, s.rdb, []string{s.metaKey(run)}, micro(usd)).Int64Slice()
	if err != nil {
		return fmt.Errorf("runstate: set budget %s: %w", run, err)
	}
	old := float64(res[1]) / 1e6
	switch res[0] {
	case -1:
		return fmt.Errorf("runstate: set budget %s: %w", run, ErrNotFound)
	case -2:
		return fmt.Errorf("run %s has no budget (it may spend without limit): %w", run, ErrBudget)
	case -3:
		return fmt.Errorf("run %s: $%.2f is not above its budget of $%.2f: %w", run, usd, old, ErrBudget)
	}
	return nil
}

// FinishedTasks returns the ids of the run's tasks in a terminal state, in
// no order. A task is counted after its record is stored and taken back by
// Reopen, so readers (the dashboard) can fetch exactly the records of
// finished tasks without listing the bucket.
func (s *Store) FinishedTasks(ctx context.Context, run string) ([]string, error) {
	ids, err := s.rdb.HKeys(ctx, s.statusKey(run)).Result()
	if err != nil {
		return nil, fmt.Errorf("runstate: finished tasks of %s: %w", run, err)
	}
	return ids, nil
}
