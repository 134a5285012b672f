package runstate_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
)

func setup(t *testing.T) *runstate.Store {
	t.Helper()
	addr, db := testenv.RedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { rdb.Close() })
	return runstate.New(rdb, runstate.Config{})
}

func TestCreateIsOnce(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	r := runstate.Run{ID: "r1", Name: "n", Total: 3, BudgetUSD: 1.5, CreatedAt: time.UnixMilli(1700000000000)}
	created, err := s.Create(ctx, r)
	if err != nil || !created {
		t.Fatalf("first create = %v, %v; want true, nil", created, err)
	}
	r.Total = 99
	created, err = s.Create(ctx, r)
	if err != nil || created {
		t.Fatalf("second create = %v, %v; want false, nil", created, err)
	}
	st, err := s.Get(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 3 || st.BudgetUSD != 1.5 || st.State != runstate.Running || !st.CreatedAt.Equal(r.CreatedAt) {
		t.Errorf("got %+v; the second create must not change the run", st)
	}
	if _, err := s.Get(ctx, "nope"); err == nil {
		t.Error("Get of an unknown run succeeded")
	}
}

// TestCompleteCountsEachTaskOnce races redeliveries of the same tasks, as
// asynq does after a worker dies, and checks the counters and the single
// observation of completion.
func TestCompleteCountsEachTaskOnce(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	const tasks = 20
	if _, err := s.Create(ctx, runstate.Run{ID: "r", Total: tasks, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		counted   int
		completes int
		wg        sync.WaitGroup
	)
	for dup := 0; dup < 4; dup++ {
		for i := 0; i < tasks; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status := manifest.Succeeded
				if i%5 == 0 {
					status = manifest.Failed
				}
				p, err := s.Complete(ctx, "r", fmt.Sprintf("t%d", i), status, i%2 == 0, 0.25)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if p.Counted {
					counted++
					if p.Complete() {
						completes++
					}
				}
			}()
		}
	}
	wg.Wait()
	if counted != tasks {
		t.Errorf("counted %d times; want %d", counted, tasks)
	}
	if completes != 1 {
		t.Errorf("the counted completion was observed %d times; want 1", completes)
	}
	st, err := s.Get(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	got := []any{st.Succeeded, st.Failed, st.Cached, st.CostUSD, st.Done(), st.Complete()}
	want := []any{16, 4, 10, 5.0, 20, true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

func TestCompleteUnknownRun(t *testing.T) {
	t.Parallel()
	s := setup(t)
	if _, err := s.Complete(context.Background(), "ghost", "t", manifest.Succeeded, false, 0); err == nil {
		t.Fatal("Complete on an unknown run succeeded")
	}
}

func TestCancelFinalizeAttempts(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, runstate.Run{ID: "r", Total: 1, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Canceled(ctx, "r"); c {
		t.Fatal("new run is canceled")
	}
	if err := s.Cancel(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if c, _ := s.Canceled(ctx, "r"); !c {
		t.Fatal("Cancel did not stick")
	}
	if err := s.Cancel(ctx, "ghost"); err == nil {
		t.Error("Cancel of an unknown run succeeded")
	}
	n, err := s.MarkFinalized(ctx, "r")
	if err != nil || n != 1 {
		t.Fatalf("MarkFinalized = %d, %v", n, err)
	}
	st, _ := s.Get(ctx, "r")
	if st.State != runstate.Canceled || st.FinishedAt.IsZero() {
		t.Errorf("after finalize of a canceled run: state %s finished %v", st.State, st.FinishedAt)
	}
	a1 := manifest.Attempt{N: 1, Seed: 7, Class: "transient", Error: "503", StartedAt: time.UnixMilli(5).UTC()}
	a2 := manifest.Attempt{N: 2, Seed: 7, StartedAt: time.UnixMilli(9).UTC()}
	for _, a := range []manifest.Attempt{a1, a2, a2} {
		if _, err := s.RecordAttempt(ctx, "r", "t", a); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Attempts(ctx, "r", "t")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]manifest.Attempt{a1, a2}, got); diff != "" {
		t.Errorf("attempts (-want +got):\n%s", diff)
	}
	ids, err := s.List(ctx, 10)
	if err != nil || len(ids) != 1 || ids[0] != "r" {
		t.Errorf("List = %v, %v", ids, err)
	}
}

// TestFreeTaskReservation: a zero price must not trip Redis's integer
// parsing (Lua's -0 is sent as "-0", which HINCRBY rejects).
func TestFreeTaskReservation(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, runstate.Run{ID: "free", Total: 1, BudgetUSD: 1, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Reserve(ctx, "free", "t", 0); err != nil || !ok {
		t.Fatalf("Reserve(0) = %v, %v", ok, err)
	}
	if err := s.Release(ctx, "free", "t"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Reserve(ctx, "free", "t", 0); err != nil || !ok {
		t.Fatalf("Reserve(0) again = %v, %v", ok, err)
	}
	if _, err := s.Complete(ctx, "free", "t", manifest.Succeeded, false, 0); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Reopen(ctx, "free", "t", nil); err != nil || !ok {
		t.Fatalf("Reopen = %v, %v", ok, err)
	}
}

// TestFinishedTaskKeepsOnlyItsStatus: once counted, a task's attempts,
// pending request, reservation, infrastructure notes and claim are gone
// from Redis; its record holds them. An old run leaves the runs index.
func TestFinishedTaskKeepsOnlyItsStatus(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { rdb.Close() })
	now := time.Now()
	s := runstate.New(rdb, runstate.Config{TTL: time.Hour, Now: func() time.Time { return now }})
	ctx := context.Background()
	if _, err := s.Create(ctx, runstate.Run{ID: "old", Total: 1, CreatedAt: now.Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, runstate.Run{ID: "r", Total: 1, BudgetUSD: 1, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.List(ctx, 10); len(ids) != 1 || ids[0] != "r" {
		t.Errorf("runs index %v; want only r (old is past the retention)", ids)
	}
	if ok, err := s.Reserve(ctx, "r", "t", 0.04); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := s.SetPending(ctx, "r", "t", runstate.Pending{Attempt: 1, Request: []byte(`{"id":"p1"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NoteInfra(ctx, "r", "t", fmt.Errorf("store down")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordAttempt(ctx, "r", "t", manifest.Attempt{N: 1, CostUSD: 0.04}); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSettling(ctx, "r", "t", "succeeded/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Complete(ctx, "r", "t", manifest.Succeeded, false, 0); err != nil {
		t.Fatal(err)
	}
	keys, err := rdb.Keys(ctx, "*{r}*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"likeness:run:{r}", "likeness:run:{r}:status"}
	slices.Sort(keys)
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("keys of run r after its task finished (-want +got):\n%s", diff)
	}
	st, _ := s.Get(ctx, "r")
	if st.CostUSD != 0.04 || st.ReservedUSD != 0 || st.InfraFailing != 0 || st.PendingRequests != 0 {
		t.Errorf("status %+v; want cost 0.04 and nothing reserved, failing or pending", st)
	}
}
