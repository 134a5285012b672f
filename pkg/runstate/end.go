package runstate

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/pkg/manifest"
)

// A successful task's last two round trips: RecordOutput records the paid
// attempt and marks the task settling in one step, before its record is
// written; Finish counts it, drops its claim and indexes its output in
// the cache in one more.

var recordOutputScript = redis.NewScript(`
local added = 0
if redis.call('LLEN', KEYS[2]) < tonumber(ARGV[3]) then
` + chargeAttemptLua + `
  added = 1
end
redis.call('HSET', KEYS[6], ARGV[1], ARGV[6])
redis.call('PEXPIRE', KEYS[6], ARGV[5])
return added
`)

// RecordOutput is RecordAttempt followed by MarkSettling(tag), in one
// step: the attempt that paid for a stored output is recorded (charged,
// its reservation and open request dropped) and the task is marked as
// writing its terminal record. It returns false when the attempt was
// already recorded (the mark is set either way).
func (s *Store) RecordOutput(ctx context.Context, run, task string, a manifest.Attempt, tag string) (bool, error) {
	b, err := json.Marshal(a)
	if err != nil {
		return false, fmt.Errorf("runstate: encode attempt: %w", err)
	}
	n, err := recordOutputScript.Run(ctx, s.rdb,
		[]string{s.metaKey(run), s.attemptsKey(run, task), s.reservedKey(run), s.pendingKey(run), s.infraKey(run), s.settlingKey(run)},
		task, b, a.N, micro(a.CostUSD), s.cfg.TTL.Milliseconds(), tag).Int()
	if err != nil {
		return false, fmt.Errorf("runstate: record output of %s/%s: %w", run, task, err)
	}
	return n == 1, nil
}

// FinishRequest is a task's terminal count, with what goes with it.
type FinishRequest struct {
	Run, Task string
	Status    manifest.Status
	Cached    bool
	// Holder, when set, is the delivery whose claim on the task is dropped.
	Holder string
	// ContentKey, when set, is indexed in the cache as described by the
	// task's record (a succeeded task's output).
	ContentKey string
	// Record, when set, is the task's record as just stored (compact JSON,
	// one line): it is pushed onto the run's fold list (see fold.go) unless
	// folding is off.
	Record []byte
}

// Finish is Complete (with no extra cost) plus, in the same round trip,
// ReleaseClaim of Holder, CacheAdd of the task's record for ContentKey
// and the record's push onto the run's fold list (Progress.FoldBatch says
// when a run:fold task is due).
func (s *Store) Finish(ctx context.Context, r FinishRequest) (Progress, error) {
	c := "0"
	if r.Cached {
		c = "1"
	}
	keys := []string{s.metaKey(r.Run), s.statusKey(r.Run), s.reservedKey(r.Run), s.pendingKey(r.Run),
		s.settlingKey(r.Run), s.infraKey(r.Run), s.baseKey(r.Run), s.attemptsKey(r.Run, r.Task), s.claimKey(r.Run, r.Task)}
	args := []any{r.Task, string(r.Status), c, 0, s.cfg.TTL.Milliseconds(), r.Holder}
	var cacheKey, cacheField string
	if r.ContentKey != "" {
		var err error
		if cacheKey, cacheField, err = s.cacheSlot(r.ContentKey); err != nil {
			return Progress{}, err
		}
	}
	ref := CacheRef{Run: r.Run, Task: r.Task}.value()
	fold := len(r.Record) > 0 && s.cfg.FoldSize > 0
	if s.cfg.WaitReplicas > 0 {
		p, err := s.completeReplicated(ctx, r.Run, r.Task, keys, args)
		if err != nil || (cacheKey == "" && !fold) {
			return p, err
		}
		pipe := s.rdb.Pipeline()
		if cacheKey != "" {
			pipe.HSet(ctx, cacheKey, cacheField, ref)
		}
		var pushed *redis.IntCmd
		if fold {
			pushed = s.pushFold(ctx, pipe, r.Run, r.Record)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return p, fmt.Errorf("runstate: cache index add and fold push: %w", err)
		}
		p.FoldBatch = s.foldBatch(pushed)
		return p, nil
	}
	var (
		script *redis.Cmd
		pushed *redis.IntCmd
	)
	exec := func(eval func(redis.Pipeliner) *redis.Cmd, extras bool) error {
		pipe := s.rdb.Pipeline()
		script = eval(pipe)
		if extras && cacheKey != "" {
			pipe.HSet(ctx, cacheKey, cacheField, ref)
		}
		if extras && fold {
			pushed = s.pushFold(ctx, pipe, r.Run, r.Record)
		}
		_, err := pipe.Exec(ctx)
		return err
	}
	err := exec(func(p redis.Pipeliner) *redis.Cmd { return completeScript.EvalSha(ctx, p, keys, args...) }, true)
	if err != nil && redis.HasErrorPrefix(script.Err(), "NOSCRIPT") {
		// The other commands ran; only the count is made again.
		err = exec(func(p redis.Pipeliner) *redis.Cmd { return completeScript.Eval(ctx, p, keys, args...) }, false)
	}
	// The count is what matters: an index entry that was not written
	// (the pipeline's other command failed) costs a later run a provider
	// call, and a rebuild of the index finds it; a line not pushed onto the
	// fold list is read from its record by the fan-in.
	res, err := script.Int64Slice()
	p, err := progress(r.Run, r.Task, res, err)
	if err == nil {
		p.FoldBatch = s.foldBatch(pushed)
	}
	return p, err
}
