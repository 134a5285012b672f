package bench

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAchievedRatio(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		accepted int
		span     time.Duration
		limit    int
		want     float64
	}{
		// 601 accepts exactly 100 ms apart span one minute: 600/min.
		{"exactly at the limit", 601, time.Minute, 600, 1},
		{"the limiter's 1% margin", 595, time.Minute, 600, 0.99},
		{"half", 301, 2 * time.Minute, 300, 0.5},
		{"one accept has no interval", 1, time.Minute, 600, 0},
		{"no span", 10, 0, 600, 0},
		{"no limit", 10, time.Minute, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := AchievedRatio(tt.accepted, t0, t0.Add(tt.span), tt.limit); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("AchievedRatio(%d, %s, %d) = %v, want %v", tt.accepted, tt.span, tt.limit, got, tt.want)
			}
		})
	}
}

func TestLowerBound(t *testing.T) {
	t.Parallel()
	loads := []Load{
		// Rate-bound: 500 at 400/min is 75 s; 500 × 0.8 s / 10 is 40 s.
		{Name: "rate", Requests: 500, RatePerMin: 400, Concurrency: 10, Latency: 800 * time.Millisecond},
		// Concurrency-bound: 500 × 3 s / 16 is 93.75 s; the rate allows 50 s.
		{Name: "concurrency", Requests: 500, RatePerMin: 600, Concurrency: 16, Latency: 3 * time.Second},
		// Only a rate: 100 at 120/min is 50 s.
		{Name: "rate only", Requests: 100, RatePerMin: 120},
		// No limits: no bound.
		{Name: "free", Requests: 1000, Latency: time.Second},
	}
	wantEach := []time.Duration{75 * time.Second, 93750 * time.Millisecond, 50 * time.Second, 0}
	for i, l := range loads {
		if got := l.Bound(); got != wantEach[i] {
			t.Errorf("%s: Bound() = %s, want %s", l.Name, got, wantEach[i])
		}
	}
	got, by := LowerBound(loads)
	if got != 93750*time.Millisecond || by != "concurrency" {
		t.Errorf("LowerBound = %s set by %q, want 1m33.75s set by \"concurrency\"", got, by)
	}
	if got, by := LowerBound(nil); got != 0 || by != "" {
		t.Errorf("LowerBound(nil) = %s, %q; want 0", got, by)
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	ds := make([]time.Duration, 0, 100)
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0.001, time.Millisecond}} {
		if got := Percentile(ds, tt.q); got != tt.want {
			t.Errorf("Percentile(1..100ms, %v) = %s, want %s", tt.q, got, tt.want)
		}
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("Percentile sorted its input")
	}
	if got := Percentile(nil, 0.99); got != 0 {
		t.Errorf("Percentile(nil) = %s, want 0", got)
	}
}

// TestResultJSON pins the JSON line of each scenario: its keys are what
// docs/benchmarks.md and anyone comparing runs read.
func TestResultJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		res  Result
		want string
	}{
		{LimitsResult{Scenario: "limits", Workers: 4, LimitRPM: 600, AchievedRatio: 0.98, OverLimitWindows: 0, MaxInFlight: 7, ConcurrencyCap: 8, AcceptedCreates: 1200},
			`{"scenario":"limits","workers":4,"limit_rpm":600,"achieved_ratio":0.98,"over_limit_windows":0,"max_in_flight":7,"concurrency_cap":8,"accepted_creates":1200}`},
		{MakespanResult{Scenario: "makespan", Tasks: 2000, MakespanS: 99.5, LowerBoundS: 93.75, Ratio: 1.061, Succeeded: 2000},
			`{"scenario":"makespan","tasks":2000,"makespan_s":99.5,"lower_bound_s":93.75,"ratio":1.061,"succeeded":2000}`},
		{OverheadResult{Scenario: "overhead", Tasks: 20000, TasksPerS: 150.5, RawAsynqTasksPerS: 3000, Ratio: 0.05, P99OverheadMS: 41.2},
			`{"scenario":"overhead","tasks":20000,"tasks_per_s":150.5,"raw_asynq_tasks_per_s":3000,"ratio":0.05,"p99_overhead_ms":41.2}`},
		{OverheadResult{Scenario: "overhead", Tasks: 20000, TasksPerS: 150.5, RawAsynqTasksPerS: 3000, Ratio: 0.05, P99OverheadMS: 41.2, TracedTasksPerS: 148, TracingRatio: 0.983},
			`{"scenario":"overhead","tasks":20000,"tasks_per_s":150.5,"raw_asynq_tasks_per_s":3000,"ratio":0.05,"p99_overhead_ms":41.2,"traced_tasks_per_s":148,"tracing_ratio":0.983}`},
	}
	for _, tt := range tests {
		got, err := json.Marshal(tt.res)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, string(got)); diff != "" {
			t.Errorf("JSON line (-want +got):\n%s", diff)
		}
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		res  Result
		want []string // substrings of the error; none: the targets are met
	}{
		{"limits met", LimitsResult{LimitRPM: 600, AchievedRatio: 0.97, MaxInFlight: 8, ConcurrencyCap: 8}, nil},
		{"limits missed", LimitsResult{LimitRPM: 600, AchievedRatio: 0.9, OverLimitWindows: 3, MaxInFlight: 9, ConcurrencyCap: 8},
			[]string{"achieved_ratio 0.900", "3 one-minute windows", "max_in_flight 9 exceeds the cap 8"}},
		{"makespan met", MakespanResult{Tasks: 10, Succeeded: 10, Ratio: 1.1}, nil},
		{"makespan missed", MakespanResult{Tasks: 10, Succeeded: 9, Ratio: 1.2}, []string{"1.200×", "9 of 10 tasks"}},
		{"overhead untraced has no target", OverheadResult{Ratio: 0.01}, nil},
		{"overhead traced within 5%", OverheadResult{TasksPerS: 100, TracedTasksPerS: 95, TracingRatio: 0.95}, nil},
		{"overhead traced too slow", OverheadResult{TasksPerS: 100, TracedTasksPerS: 90, TracingRatio: 0.9}, []string{"tracing_ratio 0.900", "90.0 tasks/s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.res.Check()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Check() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check() = nil, want errors containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestFanOutFor(t *testing.T) {
	t.Parallel()
	models := func(n int) []specModel { return make([]specModel, n) }
	tests := []struct {
		tasks, characters, models        int
		wantPrompts, wantVariants, total int
	}{
		{1200, 4, 1, 100, 3, 1200},
		{2000, 5, 4, 100, 1, 2000},
		{20000, 4, 1, 100, 50, 20000},
		{10, 4, 4, 1, 1, 16}, // at least one task per character and model
	}
	for _, tt := range tests {
		f := fanOutFor("x", tt.tasks, tt.characters, models(tt.models))
		if f.prompts != tt.wantPrompts || f.variants != tt.wantVariants || f.tasks() != tt.total {
			t.Errorf("fanOutFor(%d, %d chars, %d models) = %d prompts × %d variants = %d tasks, want %d × %d = %d",
				tt.tasks, tt.characters, tt.models, f.prompts, f.variants, f.tasks(), tt.wantPrompts, tt.wantVariants, tt.total)
		}
	}
}

func TestWithDB(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"redis://127.0.0.1:6379":           "redis://127.0.0.1:6379/11",
		"redis://127.0.0.1:6379/0":         "redis://127.0.0.1:6379/11",
		"rediss://user:pw@cache.local:1/3": "rediss://user:pw@cache.local:1/11",
	} {
		if got, err := withDB(in, 11); err != nil || got != want {
			t.Errorf("withDB(%q, 11) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := withDB("http://127.0.0.1:6379", 1); err == nil {
		t.Error("withDB accepted an http URL")
	}
}

func TestBucketName(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 4, 5, 0, time.UTC)
	if got := bucketName("Likeness", "makespan", now); got != "likeness-bench-makespan-20260301-120405" {
		t.Errorf("bucketName = %q", got)
	}
	if got := bucketName(strings.Repeat("b", 60), "overhead", now); len(got) > 63 || strings.HasPrefix(got, "-") {
		t.Errorf("long bucketName = %q (%d characters)", got, len(got))
	}
}

func TestRunConfigErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		cfg      Config
		scenario string
	}{
		{"no redis", Config{S3: S3Config{Endpoint: "127.0.0.1:9000"}}, "limits"},
		{"no store", Config{RedisURL: "redis://127.0.0.1:1"}, "limits"},
		{"unknown scenario", Config{RedisURL: "redis://127.0.0.1:1", S3: S3Config{Endpoint: "127.0.0.1:9000"}}, "speed"},
		{"no executable", Config{RedisURL: "redis://127.0.0.1:1", S3: S3Config{Endpoint: "127.0.0.1:9000"}}, "makespan"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Run(t.Context(), tt.cfg, tt.scenario)
			if !errors.Is(err, ErrConfig) {
				t.Errorf("Run = %v, want an ErrConfig", err)
			}
		})
	}
}
