package ratelimit_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/ratelimit"
)

func client(t *testing.T, addr string, db int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { c.Close() })
	return c
}

// grab acquires as fast as it can for d and returns the grant times.
func grab(ctx context.Context, l *ratelimit.Limiter, lim ratelimit.Limit, holder string, d time.Duration) ([]time.Time, error) {
	var grants []time.Time
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		lease, wait, err := l.Acquire(ctx, lim, fmt.Sprintf("%s-%d", holder, i))
		if err != nil {
			return nil, err
		}
		if wait != nil {
			time.Sleep(min(wait.For, time.Until(end)+time.Millisecond))
			continue
		}
		grants = append(grants, time.Now())
		lease.Release(ctx)
	}
	return grants, nil
}

// TestHelperProcess is the other process of TestRateSharedAcrossProcesses.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("RATELIMIT_CHILD") != "1" {
		t.Skip("helper process")
	}
	db, _ := strconv.Atoi(os.Getenv("RATELIMIT_DB"))
	rdb := redis.NewClient(&redis.Options{Addr: os.Getenv("RATELIMIT_ADDR"), DB: db})
	l := ratelimit.New(rdb, ratelimit.Config{})
	grants, err := grab(context.Background(), l, ratelimit.Limit{Key: "shared", RequestsPerMinute: 1200}, "child", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewEncoder(os.Stdout).Encode(grants)
}

// TestRateSharedAcrossProcesses runs one limiter here and one in another
// process against the same key: together they stay within the limit, and
// the limit is used.
func TestRateSharedAcrossProcesses(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	child := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	child.Env = append(os.Environ(), "RATELIMIT_CHILD=1", "RATELIMIT_ADDR="+addr, fmt.Sprintf("RATELIMIT_DB=%d", db))
	var childOut []byte
	var childErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); childOut, childErr = child.Output() }()

	l := ratelimit.New(client(t, addr, db), ratelimit.Config{})
	mine, err := grab(context.Background(), l, ratelimit.Limit{Key: "shared", RequestsPerMinute: 1200}, "parent", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if childErr != nil {
		t.Fatalf("child: %v\n%s", childErr, childOut)
	}
	var theirs []time.Time
	// The child prints test output too; the grants are the first line.
	if err := json.NewDecoder(bytes.NewReader(childOut)).Decode(&theirs); err != nil {
		t.Fatalf("child output: %v\n%s", err, childOut)
	}
	if len(mine) == 0 || len(theirs) == 0 {
		t.Fatalf("grants: parent %d, child %d; both processes should get some", len(mine), len(theirs))
	}
	all := append(append([]time.Time(nil), mine...), theirs...)
	slices.SortFunc(all, func(a, b time.Time) int { return a.Compare(b) })
	// 1200/min with the 1% margin is one grant per 50.5ms, after a burst of
	// 11 (the slack the margin leaves in a minute). Between the first and
	// the last grant, which span a little more than 3s because the child
	// starts later, both processes together get at most burst + span/50.5ms
	// + 1 grants, and nearly all of the 3s worth: the limit is shared, and
	// used.
	const burst, interval = 11, 50500 * time.Microsecond
	span := all[len(all)-1].Sub(all[0])
	maxAll := burst + int(span/interval) + 1
	minAll := (burst + int(3*time.Second/interval) + 1) * 9 / 10
	if total := len(all); total > maxAll || total < minAll {
		t.Errorf("%d grants over %v across both processes; want at most %d, and at least %d", total, span, maxAll, minAll)
	}
	if n := maxInWindow(all, time.Second); n > burst+21 {
		t.Errorf("%d grants in one second across both processes; the limit allows %d", n, burst+21)
	}
}

func maxInWindow(ts []time.Time, w time.Duration) int {
	best := 0
	for _, a := range ts {
		n := 0
		for _, b := range ts {
			if !b.Before(a) && b.Sub(a) < w {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

func TestConcurrencySlotOfDeadHolderComesBack(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	ctx := context.Background()
	lim := ratelimit.Limit{Key: "conc", Concurrency: 2}
	dead := ratelimit.New(client(t, addr, db), ratelimit.Config{LeaseTTL: time.Second})
	live := ratelimit.New(client(t, addr, db), ratelimit.Config{LeaseTTL: time.Second})
	// The dead worker takes both slots and never releases them.
	for i := 0; i < 2; i++ {
		if _, wait, err := dead.Acquire(ctx, lim, fmt.Sprint("dead", i)); err != nil || wait != nil {
			t.Fatalf("acquire %d: %v %v", i, wait, err)
		}
	}
	if _, wait, err := live.Acquire(ctx, lim, "live"); err != nil || wait == nil || wait.Reason != ratelimit.Concurrency {
		t.Fatalf("third acquire: wait %+v, %v; want a concurrency wait", wait, err)
	}
	start := time.Now()
	for {
		lease, wait, err := live.Acquire(ctx, lim, "live")
		if err != nil {
			t.Fatal(err)
		}
		if wait == nil {
			lease.Release(ctx)
			break
		}
		if time.Since(start) > 3*time.Second {
			t.Fatal("the dead holder's slot did not come back within 3 lease lengths")
		}
		time.Sleep(wait.For)
	}
	if took := time.Since(start); took < 800*time.Millisecond {
		t.Errorf("slot came back after %s; the lease is 1s", took)
	}

	// A kept lease outlives its TTL while its holder is alive.
	lease, _, _ := live.Acquire(ctx, ratelimit.Limit{Key: "kept", Concurrency: 1}, "keeper")
	kctx, cancel := context.WithCancel(ctx)
	lease.Keep(kctx)
	time.Sleep(1500 * time.Millisecond)
	if _, wait, _ := live.Acquire(ctx, ratelimit.Limit{Key: "kept", Concurrency: 1}, "other"); wait == nil {
		t.Error("a kept lease lost its slot after its TTL")
	}
	cancel()
	lease.Release(ctx)
	if n, _ := live.InFlight(ctx, "kept"); n != 0 {
		t.Errorf("in flight after release: %d", n)
	}
}

func TestCooldownStopsEveryWorker(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	ctx := context.Background()
	a := ratelimit.New(client(t, addr, db), ratelimit.Config{})
	b := ratelimit.New(client(t, addr, db), ratelimit.Config{})
	lim := ratelimit.Limit{Key: "cool", RequestsPerMinute: 6000}
	if err := a.SetCooldown(ctx, "cool", time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	// An earlier cooldown does not shorten a later one.
	if err := b.SetCooldown(ctx, "cool", time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]*ratelimit.Limiter{"a": a, "b": b} {
		_, wait, err := l.Acquire(ctx, lim, name)
		if err != nil || wait == nil || wait.Reason != ratelimit.Cooldown || wait.For < 4900*time.Millisecond {
			t.Errorf("worker %s: wait %+v, %v; want a cooldown of about 5s", name, wait, err)
		}
	}
}

func TestBreakerOpensProbesCloses(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	ctx := context.Background()
	l := ratelimit.New(client(t, addr, db), ratelimit.Config{})
	lim := ratelimit.Limit{Key: "cb", Breaker: ratelimit.BreakerConfig{Threshold: 3, OpenFor: 500 * time.Millisecond}}
	for i := 0; i < 3; i++ {
		if _, wait, _ := l.Acquire(ctx, lim, "w"); wait != nil {
			t.Fatalf("closed circuit refused request %d", i)
		}
		open, err := l.ReportTransient(ctx, "cb", lim.Breaker)
		if err != nil || open != (i == 2) {
			t.Fatalf("failure %d: open %v, %v", i, open, err)
		}
	}
	if _, wait, _ := l.Acquire(ctx, lim, "w"); wait == nil || wait.Reason != ratelimit.CircuitOpen {
		t.Fatalf("open circuit: wait %+v; want circuit_open", wait)
	}
	time.Sleep(600 * time.Millisecond)
	if _, wait, _ := l.Acquire(ctx, lim, "probe"); wait != nil {
		t.Fatalf("half-open circuit refused the probe: %+v", wait)
	}
	if _, wait, _ := l.Acquire(ctx, lim, "second"); wait == nil {
		t.Fatal("half-open circuit let a second request through before the probe finished")
	}
	if err := l.ReportSuccess(ctx, "cb"); err != nil {
		t.Fatal(err)
	}
	if _, wait, _ := l.Acquire(ctx, lim, "after"); wait != nil {
		t.Fatalf("closed circuit after a good probe refused: %+v", wait)
	}
}

func TestParseOverrides(t *testing.T) {
	t.Parallel()
	got, err := ratelimit.ParseOverrides([]byte("limits:\n  replicate: {requests_per_minute: 600, concurrency: 50}\n  bfl:flux-kontext-max: {concurrency: 6}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := ratelimit.Overrides{
		"replicate":            {Key: "replicate", RequestsPerMinute: 600, Concurrency: 50},
		"bfl:flux-kontext-max": {Key: "bfl:flux-kontext-max", Concurrency: 6},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v; want %v", got, want)
	}
	for _, bad := range []string{"limits:\n  x: {rpm: 5}\n", "limits:\n  x: {concurrency: -1}\n", "limits: [\n"} {
		if _, err := ratelimit.ParseOverrides([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestBreakerProbesBackOff: a failed probe opens the circuit again for
// twice as long, up to MaxOpenFor, and a success starts over from OpenFor.
func TestBreakerProbesBackOff(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	l := ratelimit.New(client(t, addr, db), ratelimit.Config{Now: func() time.Time { return now }})
	lim := ratelimit.Limit{Key: "cbb", Breaker: ratelimit.BreakerConfig{Threshold: 2, OpenFor: time.Second, MaxOpenFor: 5 * time.Second}}
	openFor := func() time.Duration {
		t.Helper()
		_, wait, err := l.Acquire(ctx, lim, "w")
		if err != nil || wait == nil || wait.Reason != ratelimit.CircuitOpen {
			t.Fatalf("Acquire on an open circuit: %+v, %v", wait, err)
		}
		return wait.For
	}
	fail := func() {
		t.Helper()
		if _, err := l.ReportTransient(ctx, "cbb", lim.Breaker); err != nil {
			t.Fatal(err)
		}
	}
	fail()
	fail()
	var got []time.Duration
	for range 4 {
		got = append(got, openFor())
		now = now.Add(got[len(got)-1]) // the circuit half-opens: one probe
		if _, wait, _ := l.Acquire(ctx, lim, "probe"); wait != nil {
			t.Fatalf("half-open circuit refused the probe: %+v", wait)
		}
		fail() // the probe failed
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("open times after each failed probe (-want +got):\n%s", diff)
	}
	if err := l.ReportSuccess(ctx, "cbb"); err != nil {
		t.Fatal(err)
	}
	fail()
	fail()
	if d := openFor(); d != time.Second {
		t.Errorf("after a success the circuit opened for %s; want %s again", d, time.Second)
	}
}
