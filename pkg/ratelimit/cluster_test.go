package ratelimit_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/ratelimit"
)

// TestClusterFleetLimit is the fleet limit on a real three-master Redis
// Cluster: two workers, each with its own cluster client, share a rate and
// a concurrency cap and together stay within both, while every other
// script (cooldown, breaker, state) runs on the cluster too. A script that
// touched keys of two slots would fail with CROSSSLOT.
func TestClusterFleetLimit(t *testing.T) {
	t.Parallel()
	addrs := testenv.Cluster(t)
	prefix := fmt.Sprintf("likeness-test-%d:limit", time.Now().UnixNano())
	var workers []*ratelimit.Limiter
	for range 2 {
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		t.Cleanup(func() { rdb.Close() })
		workers = append(workers, ratelimit.New(rdb, ratelimit.Config{Prefix: prefix}))
	}
	ctx := context.Background()
	lim := ratelimit.Limit{Key: "fleet", RequestsPerMinute: 1200, Concurrency: 2}

	// Each worker holds its leases a little while, so the cap binds too.
	var (
		mu       sync.Mutex
		grants   []time.Time
		inFlight int
		maxHeld  int
		wg       sync.WaitGroup
		errs     = make(chan error, 2)
	)
	end := time.Now().Add(2 * time.Second)
	for w, l := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(end); i++ {
				lease, wait, err := l.Acquire(ctx, lim, fmt.Sprintf("w%d-%d", w, i))
				if err != nil {
					errs <- err
					return
				}
				if wait != nil {
					time.Sleep(min(wait.For, time.Until(end)+time.Millisecond))
					continue
				}
				mu.Lock()
				grants = append(grants, time.Now())
				inFlight++
				maxHeld = max(maxHeld, inFlight)
				mu.Unlock()
				time.Sleep(30 * time.Millisecond)
				mu.Lock()
				inFlight--
				mu.Unlock()
				lease.Release(ctx)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("acquire on the cluster: %v", err)
	}
	slices.SortFunc(grants, func(a, b time.Time) int { return a.Compare(b) })
	// 1200/min is one grant per 50.5ms after a burst of 11; the cap of 2
	// with 30ms holds allows more, so the rate binds.
	const burst, interval = 11, 50500 * time.Microsecond
	span := grants[len(grants)-1].Sub(grants[0])
	if n, most := len(grants), burst+int(span/interval)+1; n > most || n < (burst+int(2*time.Second/interval))*8/10 {
		t.Errorf("%d grants over %v across both workers; want at most %d and nearly as many", n, span, most)
	}
	if maxHeld > lim.Concurrency {
		t.Errorf("%d leases held at once; the cap is %d", maxHeld, lim.Concurrency)
	}

	a, b := workers[0], workers[1]
	if err := a.SetCooldown(ctx, "fleet", time.Now().Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, wait, err := b.Acquire(ctx, lim, "after-cooldown"); err != nil || wait == nil || wait.Reason != ratelimit.Cooldown {
		t.Errorf("the other worker during a cooldown: %+v, %v; want a cooldown wait", wait, err)
	}
	brk := ratelimit.Limit{Key: "flaky", Breaker: ratelimit.BreakerConfig{Threshold: 2, OpenFor: time.Minute}}
	for range 2 {
		if _, err := a.ReportTransient(ctx, "flaky", brk.Breaker); err != nil {
			t.Fatal(err)
		}
	}
	if _, wait, err := b.Acquire(ctx, brk, "probe"); err != nil || wait == nil || wait.Reason != ratelimit.CircuitOpen {
		t.Errorf("the other worker with the circuit open: %+v, %v; want circuit_open", wait, err)
	}
	st, err := b.State(ctx, "flaky")
	if err != nil || st.Failures != 2 || st.OpenUntil.IsZero() {
		t.Errorf("State = %+v, %v; want 2 failures and the circuit open", st, err)
	}
	if n, err := b.NoteThrottle(ctx, "fleet", time.Minute); err != nil || n != 1 {
		t.Errorf("NoteThrottle = %d, %v; want 1", n, err)
	}
	if err := b.ReportSuccess(ctx, "flaky"); err != nil {
		t.Fatal(err)
	}
}
