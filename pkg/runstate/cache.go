package runstate

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The cache index: which stored output answers a content key (the exact
// request a task makes, task.Generate.ContentKey), so a worker learns
// whether an output was already paid for without asking the bucket, and
// asks the bucket only when one was.
//
// Entries live in 4,096 hashes, <prefix>:cache:<3 hex digits of the content
// key>, each field the next 8 bytes of the key's digest (raw), each value
// where the output is described: "<run>/<task>", the record of the task
// that stored it, or "=" for an entry of the bucket's older cache/
// directory (cache/<content key>.json). A hash holds about 25 entries per
// 100,000 and stays in Redis's compact listpack encoding up to 128 (half a
// million entries), at about 60 bytes an entry. Every operation touches one
// key, so the index works on Redis Cluster. 76 bits of the digest name an
// entry: a hit is checked against the full content key in the record, so a
// collision costs one bucket read and a provider call, never a wrong output.
//
// The bucket stays the truth: an entry is only a pointer to a record, and
// the index can be rebuilt from the records (`likeness cache reindex`, and
// automatically by a worker that finds the index missing: see
// CacheIndexed).

// CacheRef says where the output stored for a content key is described.
type CacheRef struct {
	// Run and Task name the record of the task that stored the output.
	Run, Task string
	// Legacy is an entry of the bucket's older cache/ directory: the
	// output is described by cache/<content key>.json.
	Legacy bool
}

const legacyRef = "="

func (r CacheRef) value() string {
	if r.Legacy {
		return legacyRef
	}
	return r.Run + "/" + r.Task
}

func parseCacheRef(v string) (CacheRef, bool) {
	if v == legacyRef {
		return CacheRef{Legacy: true}, true
	}
	run, task, ok := strings.Cut(v, "/")
	return CacheRef{Run: run, Task: task}, ok && run != "" && task != ""
}

// cacheSlot returns the hash and field of a content key (64 hex digits).
func (s *Store) cacheSlot(ck string) (key, field string, err error) {
	if len(ck) != 64 {
		return "", "", fmt.Errorf("runstate: cache index: content key %q is not a sha256 in hex", ck)
	}
	raw, err := hex.DecodeString(ck[4:20])
	if err != nil {
		return "", "", fmt.Errorf("runstate: cache index: content key %q: %w", ck, err)
	}
	return s.cfg.Prefix + ":cache:" + ck[:3], string(raw), nil
}

// cacheReadyKey maps each object store the index was built for to when.
func (s *Store) cacheReadyKey() string { return s.cfg.Prefix + ":cache:ready" }

// CacheLookup returns where the output for content key ck is described,
// if the index has it.
func (s *Store) CacheLookup(ctx context.Context, ck string) (CacheRef, bool, error) {
	key, field, err := s.cacheSlot(ck)
	if err != nil {
		return CacheRef{}, false, err
	}
	v, err := s.rdb.HGet(ctx, key, field).Result()
	if errors.Is(err, redis.Nil) {
		return CacheRef{}, false, nil
	}
	if err != nil {
		return CacheRef{}, false, fmt.Errorf("runstate: cache index lookup: %w", err)
	}
	ref, ok := parseCacheRef(v)
	return ref, ok, nil
}

// CacheAdd indexes ref as the description of the output for content key ck.
func (s *Store) CacheAdd(ctx context.Context, ck string, ref CacheRef) error {
	key, field, err := s.cacheSlot(ck)
	if err != nil {
		return err
	}
	if err := s.rdb.HSet(ctx, key, field, ref.value()).Err(); err != nil {
		return fmt.Errorf("runstate: cache index add: %w", err)
	}
	return nil
}

// CacheEntry is one entry for CacheAddAll.
type CacheEntry struct {
	ContentKey string
	Ref        CacheRef
}

// CacheAddAll indexes many entries, pipelined (a rebuild).
func (s *Store) CacheAddAll(ctx context.Context, entries []CacheEntry) error {
	const batch = 1000
	for len(entries) > 0 {
		n := min(batch, len(entries))
		pipe := s.rdb.Pipeline()
		for _, e := range entries[:n] {
			key, field, err := s.cacheSlot(e.ContentKey)
			if err != nil {
				return err
			}
			pipe.HSet(ctx, key, field, e.Ref.value())
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("runstate: cache index add: %w", err)
		}
		entries = entries[n:]
	}
	return nil
}

// CacheForget drops ck's entry when it pointed at ref (a record or output
// that is no longer in the bucket), so later tasks do not look again.
func (s *Store) CacheForget(ctx context.Context, ck string, ref CacheRef) error {
	key, field, err := s.cacheSlot(ck)
	if err != nil {
		return err
	}
	if err := cacheForgetScript.Run(ctx, s.rdb, []string{key}, field, ref.value()).Err(); err != nil {
		return fmt.Errorf("runstate: cache index forget: %w", err)
	}
	return nil
}

var cacheForgetScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`)

// CacheIndexed reports whether the index was built for the object store
// named store (any stable name: the bucket's location). A Redis that lost
// its data, or one that never served this store, answers false: the index
// must then be rebuilt from the bucket before a miss can be trusted.
func (s *Store) CacheIndexed(ctx context.Context, store string) (bool, error) {
	ok, err := s.rdb.HExists(ctx, s.cacheReadyKey(), store).Result()
	if err != nil {
		return false, fmt.Errorf("runstate: cache index state: %w", err)
	}
	return ok, nil
}

// MarkCacheIndexed records that the index holds every output of store.
func (s *Store) MarkCacheIndexed(ctx context.Context, store string) error {
	if err := s.rdb.HSet(ctx, s.cacheReadyKey(), store, strconv.FormatInt(s.cfg.Now().UnixMilli(), 10)).Err(); err != nil {
		return fmt.Errorf("runstate: cache index state: %w", err)
	}
	return nil
}
