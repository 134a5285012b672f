package runstate_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
)

func contentKey(i int) string {
	sum := sha256.Sum256([]byte(fmt.Sprint("request ", i)))
	return hex.EncodeToString(sum[:])
}

// lifecycle runs a task's normal path (Begin, RecordOutput, Finish) and
// Begin's refusals on s, for a single Redis and for a Cluster alike.
func lifecycle(t *testing.T, s *runstate.Store, run string) {
	t.Helper()
	ctx := context.Background()
	if ok, err := s.Create(ctx, runstate.Run{ID: run, Total: 3, BudgetUSD: 1, CreatedAt: time.UnixMilli(1700000000000)}); err != nil || !ok {
		t.Fatalf("create: %v, %v", ok, err)
	}
	ck := contentKey(1)
	req := runstate.BeginRequest{Run: run, Task: "a", Provider: "sim", Holder: "w1/1", ClaimTTL: time.Minute,
		PriceUSD: 0.6, ContentKey: ck, CacheStore: "s3://b/cache/" + run}
	b, err := s.Begin(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Claimed || b.Reservation != runstate.Reserved || b.CacheHit || b.CacheIndexed || b.State.Total != 3 || b.State.BudgetUSD != 1 {
		t.Fatalf("fresh task: %+v (state %+v); want claimed, reserved, no cache entry, index not built", b, b.State)
	}
	// Another delivery finds the task claimed and takes nothing; the same
	// one keeps its claim and is not charged twice.
	if b2, err := s.Begin(ctx, runstate.BeginRequest{Run: run, Task: "a", Provider: "sim", Holder: "w2/1", ClaimTTL: time.Minute, PriceUSD: 0.6}); err != nil || b2.Claimed {
		t.Fatalf("second delivery: %+v, %v; want not claimed", b2, err)
	}
	if b3, err := s.Begin(ctx, req); err != nil || !b3.Claimed || b3.Reservation != runstate.Reserved {
		t.Fatalf("same delivery again: %+v, %v; want claimed and reserved (replacing its reservation)", b3, err)
	}
	st, _ := s.Get(ctx, run)
	if st.ReservedUSD != 0.6 {
		t.Errorf("reserved $%.2f; want $0.60 (one reservation per task)", st.ReservedUSD)
	}
	// Another task would pass the budget: refused, nothing reserved.
	if b4, err := s.Begin(ctx, runstate.BeginRequest{Run: run, Task: "b", Provider: "sim", Holder: "w1/2", ClaimTTL: time.Minute, PriceUSD: 0.6}); err != nil || b4.Reservation != runstate.OverBudget {
		t.Fatalf("over budget: %+v, %v; want OverBudget", b4, err)
	}
	if ok, err := s.RecordOutput(ctx, run, "a", manifest.Attempt{N: 1, CostUSD: 0.5, OutputKey: "o"}, "succeeded/1"); err != nil || !ok {
		t.Fatalf("record output: %v, %v", ok, err)
	}
	if ok, err := s.RecordOutput(ctx, run, "a", manifest.Attempt{N: 1, CostUSD: 0.5, OutputKey: "o"}, "succeeded/1"); err != nil || ok {
		t.Fatalf("record output again: %v, %v; want false (charged once)", ok, err)
	}
	b5, err := s.Begin(ctx, req)
	if err != nil || len(b5.State.Attempts) != 1 || b5.State.Settling != "succeeded/1" || b5.Reservation != runstate.NotReserved {
		t.Fatalf("after the output: %+v, %v; want one attempt, settling, no new reservation", b5, err)
	}
	p, err := s.Finish(ctx, runstate.FinishRequest{Run: run, Task: "a", Status: manifest.Succeeded, Holder: "w1/1", ContentKey: ck})
	if err != nil || !p.Counted || p.Done != 1 {
		t.Fatalf("finish: %+v, %v", p, err)
	}
	if claimed, err := s.Claimed(ctx, run, "a"); err != nil || claimed {
		t.Errorf("claim after finish: %v, %v; want dropped", claimed, err)
	}
	st, _ = s.Get(ctx, run)
	if st.CostUSD != 0.5 || st.ReservedUSD != 0 || st.Succeeded != 1 {
		t.Errorf("after finish: $%.2f spent, $%.2f reserved, %d succeeded; want $0.50, $0, 1", st.CostUSD, st.ReservedUSD, st.Succeeded)
	}
	ref, ok, err := s.CacheLookup(ctx, ck)
	if err != nil || !ok || ref != (runstate.CacheRef{Run: run, Task: "a"}) {
		t.Errorf("cache index: %+v, %v, %v; want the task's record", ref, ok, err)
	}
	if err := s.MarkCacheIndexed(ctx, "s3://b/cache/"+run); err != nil {
		t.Fatal(err)
	}
	b6, err := s.Begin(ctx, runstate.BeginRequest{Run: run, Task: "c", Provider: "sim", Holder: "w1/3", ClaimTTL: time.Minute,
		PriceUSD: 0.1, ContentKey: ck, CacheStore: "s3://b/cache/" + run})
	if err != nil || !b6.CacheHit || b6.Cache.Task != "a" || !b6.CacheIndexed {
		t.Fatalf("identical request: %+v, %v; want a cache hit in a built index", b6, err)
	}
	if err := s.CacheForget(ctx, ck, runstate.CacheRef{Run: run, Task: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.CacheLookup(ctx, ck); ok {
		t.Error("entry still indexed after CacheForget")
	}
	// Canceled: Begin reads it and reserves nothing.
	if err := s.Cancel(ctx, run); err != nil {
		t.Fatal(err)
	}
	if b7, err := s.Begin(ctx, runstate.BeginRequest{Run: run, Task: "b", Provider: "sim", Holder: "w1/2", ClaimTTL: time.Minute, PriceUSD: 0.1}); err != nil || !b7.Claimed || !b7.State.Canceled || b7.Reservation != runstate.NotReserved {
		t.Fatalf("canceled run: %+v, %v; want canceled and nothing reserved", b7, err)
	}
	if _, err := s.Begin(ctx, runstate.BeginRequest{Run: "ghost", Task: "a", Holder: "w", ClaimTTL: time.Minute}); err == nil {
		t.Error("Begin of an unknown run succeeded")
	}
}

func TestBeginRecordOutputFinish(t *testing.T) {
	t.Parallel()
	lifecycle(t, setup(t), "r")
}

func TestBeginOnCluster(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.Cluster(t)})
	t.Cleanup(func() { rdb.Close() })
	s := runstate.New(rdb, runstate.Config{Prefix: fmt.Sprintf("likeness-begin-%d", time.Now().UnixNano())})
	for i := range 3 {
		lifecycle(t, s, fmt.Sprintf("run-%d", i))
	}
}

// TestCacheIndexIsCompact indexes 100,000 outputs and measures what the
// index costs in Redis (MEMORY USAGE of every shard).
func TestCacheIndexIsCompact(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { rdb.Close() })
	s := runstate.New(rdb, runstate.Config{})
	ctx := context.Background()
	const n = 100_000
	entries := make([]runstate.CacheEntry, n)
	for i := range entries {
		entries[i] = runstate.CacheEntry{ContentKey: contentKey(i),
			Ref: runstate.CacheRef{Run: "portraits-0123456789ab", Task: fmt.Sprintf("%016x", i*7919)}}
	}
	if err := s.CacheAddAll(ctx, entries); err != nil {
		t.Fatal(err)
	}
	var total int64
	iter := rdb.Scan(ctx, 0, "likeness:cache:*", 1000).Iterator()
	shards := 0
	for iter.Next(ctx) {
		b, err := rdb.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		total += b
		shards++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	per := float64(total) / n
	t.Logf("%d entries in %d hashes: %d bytes, %.1f bytes an entry", n, shards, total, per)
	if per > 80 {
		t.Errorf("the cache index costs %.1f bytes an entry; want at most 80", per)
	}
	for _, i := range []int{0, 4242, n - 1} {
		ref, ok, err := s.CacheLookup(ctx, contentKey(i))
		if err != nil || !ok || ref != entries[i].Ref {
			t.Errorf("entry %d: %+v, %v, %v; want %+v", i, ref, ok, err, entries[i].Ref)
		}
	}
	if _, ok, _ := s.CacheLookup(ctx, contentKey(n)); ok {
		t.Error("a content key never indexed was found")
	}
}
