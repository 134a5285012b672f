package telemetry_test

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/likeness-run/likeness/pkg/telemetry"
	"github.com/likeness-run/likeness/pkg/telemetry/telemetrytest"
)

func TestMetricsHandlerServesWhatWasRecorded(t *testing.T) {
	t.Parallel()
	tel, _ := telemetrytest.New(t, telemetry.Config{})
	ctx := context.Background()
	m := tel.Metrics()
	m.TaskDone(ctx, "sim", "sim:fast", "succeeded", "")
	m.TaskDone(ctx, "sim", "sim:fast", "succeeded", "")
	m.TaskDone(ctx, "replicate", "replicate:flux", "failed", "safety")
	m.ProviderLatency(ctx, "sim", "sim:fast", 1500*time.Millisecond)
	m.ProviderLatency(ctx, "sim", "sim:fast", 3*time.Second)
	m.RateLimited(ctx, "replicate")
	m.LimitWait(ctx, "replicate", "cooldown", 2*time.Second)
	m.Cost(ctx, "replicate", "replicate:flux", 0.04)
	m.Cost(ctx, "replicate", "replicate:flux", 0.035)
	m.Cost(ctx, "replicate", "replicate:flux", -1) // ignored
	m.CheckFailed(ctx, "replicate:flux", "blank")

	fams := telemetrytest.Scrape(t, tel)
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"likeness_tasks_total", map[string]string{"state": "succeeded", "provider": "sim", "model": "sim:fast", "class": ""}, 2},
		{"likeness_tasks_total", map[string]string{"state": "failed", "class": "safety"}, 1},
		{"likeness_provider_duration_seconds", map[string]string{"provider": "sim", "model": "sim:fast"}, 2},
		{"likeness_provider_rate_limited_total", map[string]string{"provider": "replicate"}, 1},
		{"likeness_limit_wait_duration_seconds", map[string]string{"limit": "replicate", "reason": "cooldown"}, 1},
		{"likeness_cost_usd_total", map[string]string{"provider": "replicate", "model": "replicate:flux"}, 0.075},
		{"likeness_check_failures_total", map[string]string{"model": "replicate:flux", "check": "blank"}, 1},
	}
	for _, tt := range tests {
		got, ok := telemetrytest.Value(fams, tt.name, tt.labels)
		if !ok || math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s%v = %v (found %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	if sum := fams["likeness_provider_duration_seconds"].GetMetric()[0].GetHistogram().GetSampleSum(); sum != 4.5 {
		t.Errorf("provider duration sum = %v seconds, want 4.5", sum)
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}

	// Labels stay low-cardinality: exactly these, never ids.
	wantLabels := map[string][]string{
		"likeness_tasks_total":                 {"class", "model", "provider", "state"},
		"likeness_provider_duration_seconds":   {"model", "provider"},
		"likeness_provider_rate_limited_total": {"provider"},
		"likeness_limit_wait_duration_seconds": {"limit", "reason"},
		"likeness_cost_usd_total":              {"model", "provider"},
		"likeness_check_failures_total":        {"check", "model"},
	}
	for name, want := range wantLabels {
		got := telemetrytest.LabelNames(fams, name)
		got = slices.DeleteFunc(got, func(l string) bool { return l == "le" }) // histogram buckets
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s labels (-want +got):\n%s", name, diff)
		}
	}
}

func TestQueueStatsGauges(t *testing.T) {
	t.Parallel()
	tel, _ := telemetrytest.New(t, telemetry.Config{})
	var fail atomic.Bool
	unregister := tel.Metrics().RegisterQueueStats(func(context.Context) ([]telemetry.QueueStat, error) {
		if fail.Load() {
			return nil, errors.New("redis: connection refused")
		}
		return []telemetry.QueueStat{
			{Queue: "gen:sim", Pending: 7, Active: 2, Retry: 1, Latency: 1500 * time.Millisecond},
			{Queue: "control", Scheduled: 1},
		}, nil
	})

	fams := telemetrytest.Scrape(t, tel)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"likeness_queue_size", map[string]string{"queue": "gen:sim", "state": "pending"}, 7},
		{"likeness_queue_size", map[string]string{"queue": "gen:sim", "state": "active"}, 2},
		{"likeness_queue_size", map[string]string{"queue": "gen:sim", "state": "retry"}, 1},
		{"likeness_queue_size", map[string]string{"queue": "control", "state": "scheduled"}, 1},
		{"likeness_queue_size", map[string]string{"queue": "control", "state": "pending"}, 0},
		{"likeness_queue_latency_seconds", map[string]string{"queue": "gen:sim"}, 1.5},
	} {
		if got, ok := telemetrytest.Value(fams, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}

	// A failing source drops the gauges for that scrape; /metrics still works.
	fail.Store(true)
	fams = telemetrytest.Scrape(t, tel)
	if _, ok := fams["likeness_queue_size"]; ok {
		t.Error("queue gauges reported from a failing source")
	}
	fail.Store(false)
	unregister()
	if _, ok := telemetrytest.Scrape(t, tel)["likeness_queue_size"]; ok {
		t.Error("queue gauges reported after unregister")
	}
}

func TestMetricsHandlerIsPrometheusText(t *testing.T) {
	t.Parallel()
	tel, _ := telemetrytest.New(t, telemetry.Config{ServiceName: "likeness-worker"})
	tel.Metrics().TaskDone(context.Background(), "sim", "sim:fast", "succeeded", "")
	fams := telemetrytest.Scrape(t, tel)
	f := fams["likeness_tasks_total"]
	if f.GetType().String() != "COUNTER" || !strings.Contains(f.GetHelp(), "terminal state") {
		t.Errorf("likeness_tasks_total: type %v help %q", f.GetType(), f.GetHelp())
	}
	if v, ok := telemetrytest.Value(fams, "target_info", map[string]string{"service_name": "likeness-worker"}); !ok || v != 1 {
		t.Errorf("target_info{service_name=likeness-worker} = %v, %v", v, ok)
	}
}
