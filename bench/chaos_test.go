package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestChaosBound(t *testing.T) {
	mix := FailureMix{Throttle: 0.03, ServerError: 0.05, Moderation: 0.01, Blank: 0.02}
	if got := mix.CreatesPerTask(); math.Abs(got-1.11852) > 1e-4 {
		t.Errorf("creates per task %.5f, want 1.11852 (1 / (0.97 × 0.95 × 0.99 × 0.98))", got)
	}
	if got := mix.PaidPerTask(); math.Abs(got-1.03071) > 1e-4 {
		t.Errorf("paid per task %.5f, want 1.03071 (1 / (0.99 × 0.98))", got)
	}
	if mix.PaidPerTask() > MaxPaidPerTask {
		t.Errorf("the failure mix alone needs %.3f paid predictions per task, above the target %.2f", mix.PaidPerTask(), MaxPaidPerTask)
	}
	// The numbers: 1,118.5 creates at 600/min, plus 2.5 s.
	b := ChaosBound(1000, 600, 40, 2500*time.Millisecond, mix)
	if math.Abs(b.Seconds()-114.352) > 0.01 {
		t.Errorf("bound %.3fs, want 114.352s", b.Seconds())
	}
	// Without failures: 1,000 creates in 100 s, plus the latency.
	if b := ChaosBound(1000, 600, 40, 2500*time.Millisecond, FailureMix{}); b != 102500*time.Millisecond {
		t.Errorf("bound without failures %s, want 1m42.5s", b)
	}
	// A tight cap binds instead of the rate: 1,000 × 2.5 s / 10 = 250 s.
	if b := ChaosBound(1000, 600, 10, 2500*time.Millisecond, FailureMix{}); b != 252500*time.Millisecond {
		t.Errorf("cap-bound %s, want 4m12.5s", b)
	}
}

func TestChaosSchedule(t *testing.T) {
	s := chaosScheduleFor(1)
	want := chaosSchedule{killEvery: 9 * time.Second, redisKill: 20 * time.Second, redisDown: 3 * time.Second,
		minioStop: 45 * time.Second, minioDown: 20 * time.Second, outageStart: 75 * time.Second, outageSpan: 30 * time.Second}
	if s != want {
		t.Errorf("schedule %+v, want %+v", s, want)
	}
	if s.nominalOutage() != 53*time.Second {
		t.Errorf("nominal outage %s, want 53s", s.nominalOutage())
	}
	if s := chaosScheduleFor(0.1); s.killEvery != 900*time.Millisecond || s.outageStart != 7500*time.Millisecond {
		t.Errorf("scaled by 0.1: %+v", s)
	}
}

func TestUnionWithin(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	spans := []span{
		{"provider", at(75), at(105)},
		{"redis", at(20), at(23.2)},
		{"minio", at(45), at(66)},
		{"overlap", at(100), at(110)}, // overlaps the provider: counted once
	}
	if got := unionWithin(spans, t0, at(200)); got != 3200*time.Millisecond+21*time.Second+35*time.Second {
		t.Errorf("union %s, want 59.2s", got)
	}
	// A run that ended at 50 s saw Redis and 5 s of MinIO.
	if got := unionWithin(spans, t0, at(50)); got != 8200*time.Millisecond {
		t.Errorf("clipped at 50s: %s, want 8.2s", got)
	}
	if got := unionWithin(nil, t0, at(50)); got != 0 {
		t.Errorf("no spans: %s", got)
	}
}

func TestChaosResultCheck(t *testing.T) {
	ok := ChaosResult{Scenario: "chaos", Tasks: 1000, Succeeded: 1000, UniqueRecords: 1000,
		PaidPredictionsPerTask: 1.032, MakespanS: 190, BoundS: 114.4, OutageS: 53.5, WorkerKills: 21}
	if err := ok.Check(); err != nil {
		t.Errorf("a result meeting every target: %v", err)
	}
	for name, tc := range map[string]struct {
		mod  func(*ChaosResult)
		want string
	}{
		"a task failed":    {func(r *ChaosResult) { r.Succeeded, r.Failed = 999, 1 }, "999 of 1000 tasks succeeded"},
		"a duplicate":      {func(r *ChaosResult) { r.DuplicateRecords = 1 }, "1 tasks counted or recorded twice"},
		"a missing output": {func(r *ChaosResult) { r.MissingOutputs = 2 }, "2 succeeded tasks"},
		"paid twice":       {func(r *ChaosResult) { r.PaidPredictionsPerTask = 1.041 }, "1.041 paid predictions per task"},
		"too slow":         {func(r *ChaosResult) { r.MakespanS = 198 }, "makespan 198.0s is above"},
		"scaled slack":     {func(r *ChaosResult) { r.MakespanS, r.BoundS, r.OutageS, r.SlackS = 20, 11.4, 5.3, 3 }, "above bound 11.4s + outage 5.3s + 3s"},
	} {
		r := ok
		tc.mod(&r)
		if err := r.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check() = %v, want it to say %q", name, err, tc.want)
		}
	}
}
