package runstate

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Folding a run's records while it runs, so that its fan-in need not read
// every record object at the end (one GET each: 100,000 of them take half a
// minute). Finish pushes the record a task just wrote (its compact JSON)
// onto the run's fold list in its round trip; each FoldSize lines pushed,
// the worker enqueues a run:fold task, which (under a lock) writes the
// list's first FoldSize lines as one object runs/<run>/parts/<seq>.jsonl
// and then trims them off the list. The list is transient: it holds at most
// about FoldSize lines, and the fan-in deletes it (DropFold).
//
// Records stay the truth: a list lost with a Redis failover only means the
// fan-in reads those records one by one, and a part written twice (a crash
// between its PUT and the trim) holds lines the spool deduplicates.

// DefaultFoldSize is Config.FoldSize's default.
const DefaultFoldSize = 1000

// foldKey lists the records of finished tasks not yet folded into a part.
func (s *Store) foldKey(run string) string { return s.metaKey(run) + ":fold" }

// foldPushedKey counts the lines ever pushed onto the fold list: each
// FoldSize of them is a fold batch.
func (s *Store) foldPushedKey(run string) string { return s.metaKey(run) + ":fold:n" }

// foldSeqKey numbers the run's parts.
func (s *Store) foldSeqKey(run string) string { return s.metaKey(run) + ":fold:seq" }

// FoldSize is the number of records a part holds.
func (s *Store) FoldSize() int { return s.cfg.FoldSize }

// pushFold queues, in pipe, line's push onto run's fold list and the
// count of lines pushed; the count's command is returned.
func (s *Store) pushFold(ctx context.Context, pipe redis.Pipeliner, run string, line []byte) *redis.IntCmd {
	pipe.RPush(ctx, s.foldKey(run), line)
	pipe.PExpire(ctx, s.foldKey(run), s.cfg.TTL)
	n := pipe.Incr(ctx, s.foldPushedKey(run))
	pipe.PExpire(ctx, s.foldPushedKey(run), s.cfg.TTL)
	return n
}

// foldBatch is the batch a push that made the count n completes, or 0.
func (s *Store) foldBatch(n *redis.IntCmd) int64 {
	if n == nil || n.Err() != nil || s.cfg.FoldSize <= 0 {
		return 0
	}
	if v := n.Val(); v > 0 && v%int64(s.cfg.FoldSize) == 0 {
		return v / int64(s.cfg.FoldSize)
	}
	return 0
}

// FoldLines returns the first n lines of run's fold list (fewer when it
// holds fewer).
func (s *Store) FoldLines(ctx context.Context, run string, n int) ([][]byte, error) {
	vals, err := s.rdb.LRange(ctx, s.foldKey(run), 0, int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("runstate: fold list of %s: %w", run, err)
	}
	lines := make([][]byte, len(vals))
	for i, v := range vals {
		lines[i] = []byte(v)
	}
	return lines, nil
}

// NextPart returns the number of run's next part: 1, 2, ... over the
// run's life (a part written again after a crash gets a new number).
func (s *Store) NextPart(ctx context.Context, run string) (int64, error) {
	pipe := s.rdb.TxPipeline()
	n := pipe.Incr(ctx, s.foldSeqKey(run))
	pipe.PExpire(ctx, s.foldSeqKey(run), s.cfg.TTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("runstate: next part of %s: %w", run, err)
	}
	return n.Val(), nil
}

// TrimFold drops the first n lines of run's fold list: they are stored in
// a part. Lines pushed meanwhile go on the list's end and stay.
func (s *Store) TrimFold(ctx context.Context, run string, n int) error {
	if err := s.rdb.LTrim(ctx, s.foldKey(run), int64(n), -1).Err(); err != nil {
		return fmt.Errorf("runstate: trim fold list of %s: %w", run, err)
	}
	return nil
}

// FoldLen is the number of lines on run's fold list.
func (s *Store) FoldLen(ctx context.Context, run string) (int64, error) {
	n, err := s.rdb.LLen(ctx, s.foldKey(run)).Result()
	if err != nil {
		return 0, fmt.Errorf("runstate: fold list of %s: %w", run, err)
	}
	return n, nil
}

// DropFold deletes run's fold list and its count once the run is
// finalized: what it still held (fewer than FoldSize lines) was read from
// the records. The part numbers stay, so parts of a retried run's next
// fan-in do not overwrite this one's.
func (s *Store) DropFold(ctx context.Context, run string) error {
	if err := s.rdb.Del(ctx, s.foldKey(run), s.foldPushedKey(run)).Err(); err != nil {
		return fmt.Errorf("runstate: drop fold list of %s: %w", run, err)
	}
	return nil
}

// foldLockTTL bounds how long a fold holds its run's lock should its
// worker die: a fold is a read, a PUT and a trim per batch.
const foldLockTTL = 2 * time.Minute

// LockFold takes run's fold lock for holder; false when another fold of
// the run holds it.
func (s *Store) LockFold(ctx context.Context, run, holder string) (bool, error) {
	return s.TryLock(ctx, "fold:{"+run+"}", holder, foldLockTTL)
}

// UnlockFold drops holder's fold lock of run.
func (s *Store) UnlockFold(ctx context.Context, run, holder string) {
	s.Unlock(ctx, "fold:{"+run+"}", holder)
}
