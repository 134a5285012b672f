package runstate_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
)

// TestCompleteConfirmsReplicas: with WaitReplicas, a count the master
// cannot confirm on a replica (here: a master without any) is made again
// after RecountAfter, and still counts the task once; on the Sentinel set,
// whose replica is in sync, it is confirmed at once.
func TestCompleteConfirmsReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	check := func(t *testing.T, rdb redis.UniversalClient, slowest time.Duration) {
		t.Helper()
		s := runstate.New(rdb, runstate.Config{WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond, RecountAfter: 300 * time.Millisecond})
		if _, err := s.Create(ctx, runstate.Run{ID: "r", Total: 2, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		for i, want := range []bool{true, false} {
			start := time.Now()
			p, err := s.Complete(ctx, "r", "a", manifest.Succeeded, false, 0.5)
			took := time.Since(start)
			if err != nil || p.Counted != want || p.Done != 1 || p.Total != 2 {
				t.Errorf("Complete #%d = %+v, %v; want counted %v, 1 of 2 done", i+1, p, err, want)
			}
			if took > slowest {
				t.Errorf("Complete #%d took %s; want at most %s", i+1, took, slowest)
			}
		}
		st, err := s.Get(ctx, "r")
		if err != nil || st.Succeeded != 1 || st.CostUSD != 0.5 {
			t.Errorf("status %+v, %v; want 1 succeeded costing $0.50", st, err)
		}
	}
	t.Run("no replica", func(t *testing.T) {
		t.Parallel()
		addr, db := testenv.RedisDB(t)
		rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
		defer rdb.Close()
		check(t, rdb, 5*time.Second)
	})
	t.Run("sentinel", func(t *testing.T) {
		t.Parallel()
		sen := testenv.Sentinel(t)
		sen.WaitReady(t, 30*time.Second)
		rdb := sen.Client(sen.DB(t))
		defer rdb.Close()
		check(t, rdb, 250*time.Millisecond)
	})
}
