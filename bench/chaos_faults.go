package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// chaosSchedule is when each fault of the chaos scenario happens, counted
// from the start of the submit, already multiplied by Config.TimeScale.
type chaosSchedule struct {
	killEvery               time.Duration // a worker SIGKILLed and replaced this often
	redisKill, redisDown    time.Duration // Redis SIGKILLed, restarted on its AOF this much later
	minioStop, minioDown    time.Duration // MinIO stopped, started again on its data this much later
	outageStart, outageSpan time.Duration // every provider request answered 503
}

// chaosScheduleFor is the schedule, scaled: a worker every 9 s,
// Redis at 20 s for 3 s, MinIO at 45 s for 20 s, the provider at 75 s for
// 30 s.
func chaosScheduleFor(scale float64) chaosSchedule {
	d := func(s float64) time.Duration { return time.Duration(s * scale * float64(time.Second)) }
	return chaosSchedule{
		killEvery: d(9),
		redisKill: d(20), redisDown: d(3),
		minioStop: d(45), minioDown: d(20),
		outageStart: d(75), outageSpan: d(30),
	}
}

// nominalOutage is the down time the schedule plans (the faults do not
// overlap): 53 s at scale 1.
func (s chaosSchedule) nominalOutage() time.Duration { return s.redisDown + s.minioDown + s.outageSpan }

// fleet is the chaos scenario's worker processes: n slots, each holding
// one `likeness worker`. churn SIGKILLs one every killEvery, round robin,
// and starts its replacement at once; a worker that exits on its own (one
// started while Redis or MinIO was down exits with status 3) is started
// again a second later.
type fleet struct {
	e       *env
	n       int
	slots   int // --concurrency of each worker
	environ []string

	mu       sync.Mutex
	workers  []*proc
	gen      []int       // processes started per slot, for log names
	exitedAt []time.Time // when a slot's worker was first seen exited on its own
	kills    int
	restarts int
}

func newFleet(e *env, n, slots int, environ []string) *fleet {
	return &fleet{e: e, n: n, slots: slots, environ: environ,
		workers: make([]*proc, n), gen: make([]int, n), exitedAt: make([]time.Time, n)}
}

// spawn starts slot i's next worker. Called with f.mu held.
func (f *fleet) spawn(i int) error {
	f.gen[i]++
	p, err := f.e.start(fmt.Sprintf("worker-%d.%d", i+1, f.gen[i]), []string{"worker",
		"--concurrency", fmt.Sprint(f.slots), "--shutdown-timeout", "5s"}, f.environ, nil)
	if err != nil {
		return err
	}
	f.workers[i] = p
	f.exitedAt[i] = time.Time{}
	return nil
}

// churn runs until ctx is done.
func (f *fleet) churn(ctx context.Context, t0 time.Time, every time.Duration) {
	next := t0.Add(every)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			f.mu.Lock()
			if every > 0 && !now.Before(next) {
				i := f.kills % f.n
				f.workers[i].kill()
				f.kills++
				if err := f.spawn(i); err != nil {
					f.e.progressf("replace worker %d: %v", i+1, err)
				}
				f.e.progressf("t=%.1fs: worker %d SIGKILLed and replaced (kill %d)", now.Sub(t0).Seconds(), i+1, f.kills)
				next = next.Add(every)
			}
			for i, p := range f.workers {
				if p.exited() == nil {
					continue
				}
				if f.exitedAt[i].IsZero() {
					f.exitedAt[i] = now
					f.e.progressf("t=%.1fs: worker %d exited on its own (%v); restarting it in 1s", now.Sub(t0).Seconds(), i+1, p.err)
				} else if now.Sub(f.exitedAt[i]) >= time.Second {
					f.restarts++
					if err := f.spawn(i); err != nil {
						f.e.progressf("restart worker %d: %v", i+1, err)
					}
				}
			}
			f.mu.Unlock()
		}
	}
}

// counts returns the kills and the restarts of workers that exited on
// their own.
func (f *fleet) counts() (kills, restarts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kills, f.restarts
}

// chaosFaults injects the infrastructure faults on schedule and measures
// how long each part was down.
type chaosFaults struct {
	e            *env
	sched        chaosSchedule
	redis, minio *infraServer
	simBase      string

	mu    sync.Mutex
	spans []span // measured down intervals
}

// run injects the faults at t0 + their times until ctx is done; then it
// brings back whatever is still down (Redis, MinIO, the provider), so the
// results can be read, unless parent is done too.
func (f *chaosFaults) run(ctx, parent context.Context, t0 time.Time) {
	s := f.sched
	steps := []struct {
		at time.Duration
		do func(context.Context, time.Time)
	}{
		{s.redisKill, f.killRedis},
		{s.redisKill + s.redisDown, f.restartRedis},
		{s.minioStop, f.stopMinIO},
		{s.minioStop + s.minioDown, f.startMinIO},
		{s.outageStart, f.startOutage},
	}
	for _, st := range steps {
		timer := time.NewTimer(time.Until(t0.Add(st.at)))
		select {
		case <-ctx.Done():
			timer.Stop()
			f.heal(parent, t0)
			return
		case <-timer.C:
		}
		st.do(parent, t0)
	}
	<-ctx.Done()
	f.heal(parent, t0)
}

func (f *chaosFaults) down(what string, from, to time.Time) {
	f.mu.Lock()
	f.spans = append(f.spans, span{what, from, to})
	f.mu.Unlock()
}

// downtime is the union of the measured down intervals within [lo, hi].
func (f *chaosFaults) downtime(lo, hi time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return unionWithin(f.spans, lo, hi)
}

func (f *chaosFaults) killRedis(_ context.Context, t0 time.Time) {
	f.redis.p.kill()
	f.redis.downSince = time.Now()
	f.e.progressf("t=%.1fs: redis SIGKILLed", time.Since(t0).Seconds())
}

func (f *chaosFaults) restartRedis(ctx context.Context, t0 time.Time) {
	f.bringBack(ctx, t0, f.redis, "restarted on its append-only file")
}

func (f *chaosFaults) stopMinIO(_ context.Context, t0 time.Time) {
	f.minio.downSince = time.Now()
	f.minio.p.stop(5 * time.Second)
	f.e.progressf("t=%.1fs: minio stopped", time.Since(t0).Seconds())
}

func (f *chaosFaults) startMinIO(ctx context.Context, t0 time.Time) {
	f.bringBack(ctx, t0, f.minio, "started again on its data directory")
}

// bringBack starts a server that is down, retrying every second until it
// answers or ctx is done, and records the time it was down.
func (f *chaosFaults) bringBack(ctx context.Context, t0 time.Time, s *infraServer, how string) {
	if s.running() {
		return
	}
	for {
		err := s.start(ctx, 60*time.Second)
		if err == nil {
			break
		}
		f.e.progressf("t=%.1fs: %s did not come back: %v", time.Since(t0).Seconds(), s.name, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	now := time.Now()
	f.down(s.name, s.downSince, now)
	f.e.progressf("t=%.1fs: %s %s, answering again after %.1fs down", now.Sub(t0).Seconds(), s.name, how, now.Sub(s.downSince).Seconds())
}

func (f *chaosFaults) startOutage(ctx context.Context, t0 time.Time) {
	from := time.Now()
	if err := f.outage(ctx, f.sched.outageSpan); err != nil {
		f.e.progressf("t=%.1fs: could not start the provider outage: %v", time.Since(t0).Seconds(), err)
		return
	}
	f.down("provider", from, from.Add(f.sched.outageSpan))
	f.e.progressf("t=%.1fs: provider outage: every request answered 503 for %s", from.Sub(t0).Seconds(), f.sched.outageSpan)
}

// outage asks the simulator for an outage of d (0 ends one).
func (f *chaosFaults) outage(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.simBase+"/admin/outage?for="+d.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("sim /admin/outage: %s", resp.Status)
	}
	return nil
}

// heal ends the faults still on when the scenario stops waiting: the
// servers down are started again and the outage is ended, and the down
// intervals are cut at now.
func (f *chaosFaults) heal(ctx context.Context, t0 time.Time) {
	if ctx.Err() != nil {
		return
	}
	f.bringBack(ctx, t0, f.redis, "restarted on its append-only file")
	f.bringBack(ctx, t0, f.minio, "started again on its data directory")
	now := time.Now()
	f.mu.Lock()
	cut := false
	for i, s := range f.spans {
		if s.what == "provider" && s.to.After(now) {
			f.spans[i].to, cut = now, true
		}
	}
	f.mu.Unlock()
	if cut {
		_ = f.outage(ctx, 0)
	}
}
