package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Metrics are likeness's instruments. Labels are low-cardinality by
// construction: pass bounded values (a model's registry ref, a provider
// name, a failure class, a check name, a limit key), never a run id, task
// id, prompt or URL. A nil *Metrics records nothing.
//
// As Prometheus text on /metrics:
//
//	likeness_tasks_total{provider,model,state,class}                       counter
//	likeness_provider_duration_seconds{provider,model}                     histogram
//	likeness_provider_rate_limited_total{provider}                         counter
//	likeness_limit_wait_duration_seconds{limit,reason}                     histogram
//	likeness_cost_usd_total{provider,model}                                counter
//	likeness_check_failures_total{model,check}                             counter
//	likeness_queue_size{queue,state}                                       gauge
//	likeness_queue_latency_seconds{queue}                                  gauge
//
// plus http_client_* from Transport, go_* and process_*, and target_info
// with the resource.
type Metrics struct {
	log *slog.Logger

	meter            metric.Meter
	tasks            metric.Int64Counter
	providerDuration metric.Float64Histogram
	rateLimited      metric.Int64Counter
	limitWait        metric.Float64Histogram
	cost             metric.Float64Counter
	checkFailures    metric.Int64Counter
	queueSize        metric.Int64ObservableGauge
	queueLatency     metric.Float64ObservableGauge
}

func newMetrics(meter metric.Meter, log *slog.Logger) *Metrics {
	m := &Metrics{log: log, meter: meter}
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	m.tasks, err = meter.Int64Counter("likeness.tasks", metric.WithUnit("{task}"),
		metric.WithDescription("Tasks that reached a terminal state, by state and failure class."))
	check(err)
	m.providerDuration, err = meter.Float64Histogram("likeness.provider.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of provider calls, submit to result, whatever the outcome."),
		metric.WithExplicitBucketBoundaries(0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600))
	check(err)
	m.rateLimited, err = meter.Int64Counter("likeness.provider.rate_limited", metric.WithUnit("{response}"),
		metric.WithDescription("Rate-limit answers (HTTP 429 and equivalents) from providers."))
	check(err)
	m.limitWait, err = meter.Float64Histogram("likeness.limit.wait.duration", metric.WithUnit("s"),
		metric.WithDescription("Waits imposed by fleet-wide limits, waited inline or by requeueing."),
		metric.WithExplicitBucketBoundaries(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300))
	check(err)
	m.cost, err = meter.Float64Counter("likeness.cost.usd", metric.WithUnit("{USD}"),
		metric.WithDescription("Money spent on provider calls, in US dollars."))
	check(err)
	m.checkFailures, err = meter.Int64Counter("likeness.check.failures", metric.WithUnit("{output}"),
		metric.WithDescription("Outputs that failed an output check, by check."))
	check(err)
	m.queueSize, err = meter.Int64ObservableGauge("likeness.queue.size", metric.WithUnit("{task}"),
		metric.WithDescription("Tasks in each asynq queue, by state."))
	check(err)
	m.queueLatency, err = meter.Float64ObservableGauge("likeness.queue.latency", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest pending task in each asynq queue."))
	check(err)
	if len(errs) > 0 {
		// The SDK returns working instruments alongside such errors; they
		// are bugs in the names above, not a reason to stop.
		log.Warn("telemetry: create instruments", "err", errors.Join(errs...))
	}
	return m
}

// TaskDone counts a task that reached a terminal state (manifest status:
// "succeeded", "failed", "skipped_budget", ...) with its failure class,
// empty for successes. Count each task once, where its record is settled.
func (m *Metrics) TaskDone(ctx context.Context, provider, model, state, class string) {
	if m == nil {
		return
	}
	m.tasks.Add(ctx, 1, metric.WithAttributes(
		attribute.String("provider", provider), attribute.String("model", model),
		attribute.String("state", state), attribute.String("class", class)))
}

// ProviderLatency records how long one provider call took, successful or
// not.
func (m *Metrics) ProviderLatency(ctx context.Context, provider, model string, d time.Duration) {
	if m == nil {
		return
	}
	m.providerDuration.Record(ctx, d.Seconds(), metric.WithAttributes(
		attribute.String("provider", provider), attribute.String("model", model)))
}

// RateLimited counts a provider's rate-limit answer.
func (m *Metrics) RateLimited(ctx context.Context, provider string) {
	if m == nil {
		return
	}
	m.rateLimited.Add(ctx, 1, metric.WithAttributes(attribute.String("provider", provider)))
}

// LimitWait records a wait imposed by the fleet-wide limit limit (its key)
// for reason ("rate", "concurrency", "cooldown", "circuit").
func (m *Metrics) LimitWait(ctx context.Context, limit, reason string, d time.Duration) {
	if m == nil {
		return
	}
	m.limitWait.Record(ctx, d.Seconds(), metric.WithAttributes(
		attribute.String("limit", limit), attribute.String("reason", reason)))
}

// Cost adds money spent. Amounts of zero or less are ignored.
func (m *Metrics) Cost(ctx context.Context, provider, model string, usd float64) {
	if m == nil || !(usd > 0) {
		return
	}
	m.cost.Add(ctx, usd, metric.WithAttributes(
		attribute.String("provider", provider), attribute.String("model", model)))
}

// CheckFailed counts an output that failed the named output check.
func (m *Metrics) CheckFailed(ctx context.Context, model, check string) {
	if m == nil {
		return
	}
	m.checkFailures.Add(ctx, 1, metric.WithAttributes(
		attribute.String("model", model), attribute.String("check", check)))
}

// QueueStat is one queue's state at a moment, as asynq's Inspector reports
// it.
type QueueStat struct {
	Queue                                                               string
	Pending, Active, Scheduled, Retry, Archived, Completed, Aggregating int
	// Latency is the age of the oldest pending task.
	Latency time.Duration
}

// QueueStatsFunc reports the queues' state; it is called on every
// collection (every scrape of /metrics).
type QueueStatsFunc func(context.Context) ([]QueueStat, error)

// RegisterQueueStats feeds the queue gauges from fn until unregister is
// called. An error from fn is logged and that collection reports no queue
// gauges.
func (m *Metrics) RegisterQueueStats(fn QueueStatsFunc) (unregister func()) {
	if m == nil || fn == nil {
		return func() {}
	}
	reg, err := m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		stats, err := fn(ctx)
		if err != nil {
			m.log.WarnContext(ctx, "telemetry: read queue stats", "err", err)
			return nil
		}
		for _, s := range stats {
			q := attribute.String("queue", s.Queue)
			for _, st := range []struct {
				state string
				n     int
			}{
				{"pending", s.Pending}, {"active", s.Active}, {"scheduled", s.Scheduled},
				{"retry", s.Retry}, {"archived", s.Archived}, {"completed", s.Completed},
				{"aggregating", s.Aggregating},
			} {
				o.ObserveInt64(m.queueSize, int64(st.n), metric.WithAttributes(q, attribute.String("state", st.state)))
			}
			o.ObserveFloat64(m.queueLatency, s.Latency.Seconds(), metric.WithAttributes(q))
		}
		return nil
	}, m.queueSize, m.queueLatency)
	if err != nil {
		m.log.Warn("telemetry: register queue stats", "err", err)
		return func() {}
	}
	return func() {
		if err := reg.Unregister(); err != nil {
			m.log.Warn("telemetry: unregister queue stats", "err", err)
		}
	}
}

// InspectorQueueStats reads every queue in inspector's Redis, for
// RegisterQueueStats. Every process that serves /metrics sees the same
// queues, so aggregate these gauges with max, not sum, across a fleet.
func InspectorQueueStats(inspector *asynq.Inspector) QueueStatsFunc {
	return func(context.Context) ([]QueueStat, error) {
		queues, err := inspector.Queues()
		if err != nil {
			return nil, fmt.Errorf("list queues: %w", err)
		}
		stats := make([]QueueStat, 0, len(queues))
		for _, q := range queues {
			info, err := inspector.GetQueueInfo(q)
			if errors.Is(err, asynq.ErrQueueNotFound) {
				continue // removed since Queues
			}
			if err != nil {
				return nil, fmt.Errorf("queue %s: %w", q, err)
			}
			stats = append(stats, QueueStat{
				Queue: q, Pending: info.Pending, Active: info.Active, Scheduled: info.Scheduled,
				Retry: info.Retry, Archived: info.Archived, Completed: info.Completed,
				Aggregating: info.Aggregating, Latency: info.Latency,
			})
		}
		return stats, nil
	}
}
