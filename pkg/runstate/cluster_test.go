package runstate_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
)

// TestClusterEveryScript runs every operation of the Store, each Lua
// script and transaction among them, on a real three-master Redis
// Cluster: one that touched keys of two slots would fail with CROSSSLOT.
// Runs with several ids land on several masters.
func TestClusterEveryScript(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testenv.Cluster(t)})
	t.Cleanup(func() { rdb.Close() })
	prefix := fmt.Sprintf("likeness-test-%d", time.Now().UnixNano())
	s := runstate.New(rdb, runstate.Config{Prefix: prefix})
	ctx := context.Background()
	var ids []string
	for i := range 6 {
		id := fmt.Sprintf("run-%d", i)
		ids = append(ids, id)
		if ok, err := s.Create(ctx, runstate.Run{ID: id, Total: 2, BudgetUSD: 1, CreatedAt: time.UnixMilli(int64(1700000000000 + i))}); err != nil || !ok {
			t.Fatalf("create %s: %v, %v", id, ok, err)
		}
		if ok, err := s.Reserve(ctx, id, "a", 0.4); err != nil || !ok {
			t.Fatalf("reserve %s: %v, %v", id, ok, err)
		}
		if ok, err := s.Reserve(ctx, id, "b", 0.7); err != nil || ok {
			t.Fatalf("reserve past the budget %s: %v, %v; want refused", id, ok, err)
		}
		if err := s.Release(ctx, id, "a"); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Claim(ctx, id, "a", "w1", time.Minute); err != nil || !ok {
			t.Fatalf("claim %s: %v, %v", id, ok, err)
		}
		if ok, err := s.KeepClaim(ctx, id, "a", "w1", time.Minute); err != nil || !ok {
			t.Fatalf("keep claim %s: %v, %v", id, ok, err)
		}
		if ok, err := s.RecordAttempt(ctx, id, "a", manifest.Attempt{N: 1, CostUSD: 0.25}); err != nil || !ok {
			t.Fatalf("record attempt %s: %v, %v", id, ok, err)
		}
		if err := s.SetPending(ctx, id, "b", runstate.Pending{Attempt: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.NoteInfra(ctx, id, "b", errors.New("redis went away")); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkSettling(ctx, id, "b", "tag"); err != nil {
			t.Fatal(err)
		}
		if err := s.StopProvider(ctx, id, "bfl", "out of credit"); err != nil {
			t.Fatal(err)
		}
		for _, task := range []string{"a", "b"} {
			if _, err := s.Complete(ctx, id, task, manifest.Succeeded, false, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.ReleaseClaim(ctx, id, "a", "w1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.MarkFinalized(ctx, id); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Reopen(ctx, id, "b", nil); err != nil || !ok {
			t.Fatalf("reopen %s: %v, %v", id, ok, err)
		}
		if err := s.Revive(ctx, id, 2); err != nil {
			t.Fatal(err)
		}
		if err := s.ResumeProviders(ctx, id); err != nil {
			t.Fatal(err)
		}
		st, err := s.Get(ctx, id)
		if err != nil || st.Succeeded != 1 || st.CostUSD != 0.25 || st.State != runstate.Running {
			t.Fatalf("after reopen: %+v, %v; want 1 succeeded, $0.25, running", st, err)
		}
	}
	listed, err := s.List(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(listed)
	if !slices.Equal(listed, ids) {
		t.Errorf("List = %v; want %v newest first", listed, ids)
	}
	// The runs are spread over the masters: the test exercised the slots.
	masters := map[string]bool{}
	for _, id := range ids {
		slot, err := rdb.ClusterKeySlot(ctx, prefix+":run:{"+id+"}").Result()
		if err != nil {
			t.Fatal(err)
		}
		masters[fmt.Sprint(slot*3/16384)] = true
	}
	if len(masters) < 2 {
		t.Errorf("all runs hash to one third of the slots; pick other ids")
	}
}
