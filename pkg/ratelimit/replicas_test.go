package ratelimit_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/ratelimit"
)

// loseFirstRelease is a go-redis hook that drops the first pipelined ZREM
// it sees, as a failover drops the old master's last writes: the command
// never reaches Redis and WAIT answers that no replica has it.
type loseFirstRelease struct{ lost atomic.Bool }

func (*loseFirstRelease) DialHook(next redis.DialHook) redis.DialHook { return next }
func (*loseFirstRelease) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}

func (h *loseFirstRelease) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 2 && strings.EqualFold(cmds[0].Name(), "zrem") && h.lost.CompareAndSwap(false, true) {
			cmds[1].(*redis.Cmd).SetVal(int64(0))
			return nil
		}
		return next(ctx, cmds)
	}
}

// TestReleaseConfirmedOnReplicas: with WaitReplicas, a freed slot the
// replicas do not confirm (lost as in a failover) is freed again after
// RereleaseAfter, long before its lease would expire; behind the Sentinel
// set, whose replica is in sync, a release is confirmed at once.
func TestReleaseConfirmedOnReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lim := ratelimit.Limit{Key: "conc", Concurrency: 1}
	const lease = time.Minute

	// lossy returns a limiter whose first release is lost, and a plain one
	// on the same database.
	lossy := func(t *testing.T) (l, other *ratelimit.Limiter, hook *loseFirstRelease) {
		addr, db := testenv.RedisDB(t)
		c := client(t, addr, db)
		hook = &loseFirstRelease{}
		c.AddHook(hook)
		l = ratelimit.New(c, ratelimit.Config{LeaseTTL: lease, WaitReplicas: 1,
			WaitTimeout: 20 * time.Millisecond, RereleaseAfter: 100 * time.Millisecond})
		t.Cleanup(l.Close)
		return l, ratelimit.New(client(t, addr, db), ratelimit.Config{LeaseTTL: lease}), hook
	}
	// freeWithin reports whether other gets the slot within d.
	freeWithin := func(other *ratelimit.Limiter, holder string, d time.Duration) bool {
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
			if le, wait, err := other.Acquire(ctx, lim, holder); err == nil && wait == nil {
				le.Release(ctx)
				return true
			}
		}
		return false
	}

	t.Run("lost release", func(t *testing.T) {
		t.Parallel()
		l, other, hook := lossy(t)
		le, wait, err := l.Acquire(ctx, lim, "a")
		if err != nil || wait != nil {
			t.Fatalf("acquire: %v %v", wait, err)
		}
		start := time.Now()
		le.Release(ctx)
		if !hook.lost.Load() {
			t.Fatal("the hook did not drop the release: the test checks nothing")
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("Release took %s: the re-release must not hold the caller", took)
		}
		if !freeWithin(other, "b", 5*time.Second) {
			t.Fatalf("slot still held %s after a lost release (lease %s)", time.Since(start), lease)
		}
	})

	t.Run("newer lease of the same holder survives", func(t *testing.T) {
		t.Parallel()
		l, other, hook := lossy(t)
		two := ratelimit.Limit{Key: "conc2", Concurrency: 2}
		le, _, err := l.Acquire(ctx, two, "a")
		if err != nil {
			t.Fatal(err)
		}
		le.Release(ctx) // lost: re-released in 100 ms unless "a" holds a newer lease by then
		if !hook.lost.Load() {
			t.Fatal("the hook did not drop the release: the test checks nothing")
		}
		time.Sleep(5 * time.Millisecond)
		if _, wait, err := l.Acquire(ctx, two, "a"); err != nil || wait != nil {
			t.Fatalf("second lease of a: %v %v", wait, err)
		}
		time.Sleep(300 * time.Millisecond) // past the re-release
		if _, wait, err := other.Acquire(ctx, two, "b"); err != nil || wait != nil {
			t.Fatalf("b: %v %v", wait, err)
		}
		if le, wait, err := other.Acquire(ctx, two, "c"); err != nil || wait == nil {
			le.Release(ctx)
			t.Fatalf("c got a third slot of two (%v): the re-release freed a's newer lease", err)
		}
	})

	t.Run("sentinel", func(t *testing.T) {
		t.Parallel()
		sen := testenv.Sentinel(t)
		sen.WaitReady(t, 30*time.Second)
		rdb := sen.Client(sen.DB(t))
		defer rdb.Close()
		l := ratelimit.New(rdb, ratelimit.Config{LeaseTTL: lease, WaitReplicas: 1, RereleaseAfter: 5 * time.Second})
		for i := range 3 {
			le, wait, err := l.Acquire(ctx, lim, "s")
			if err != nil || wait != nil {
				t.Fatalf("acquire %d: %v %v", i, wait, err)
			}
			start := time.Now()
			le.Release(ctx)
			if took := time.Since(start); took > time.Second {
				t.Errorf("release %d took %s: the replica did not confirm it", i, took)
			}
		}
	})
}
