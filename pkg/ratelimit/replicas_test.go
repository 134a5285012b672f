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

	t.Run("lost release", func(t *testing.T) {
		t.Parallel()
		addr, db := testenv.RedisDB(t)
		lossy := client(t, addr, db)
		hook := &loseFirstRelease{}
		lossy.AddHook(hook)
		l := ratelimit.New(lossy, ratelimit.Config{LeaseTTL: lease, WaitReplicas: 1,
			WaitTimeout: 20 * time.Millisecond, RereleaseAfter: 100 * time.Millisecond})
		le, wait, err := l.Acquire(ctx, lim, "a")
		if err != nil || wait != nil {
			t.Fatalf("acquire: %v %v", wait, err)
		}
		start := time.Now()
		le.Release(ctx)
		if !hook.lost.Load() {
			t.Fatal("the hook did not drop the release: the test checks nothing")
		}
		other := ratelimit.New(client(t, addr, db), ratelimit.Config{LeaseTTL: lease})
		if _, wait, err := other.Acquire(ctx, lim, "b"); err != nil || wait != nil {
			t.Fatalf("slot still held %s after a lost release (lease %s): %v %v", time.Since(start), lease, wait, err)
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
