// Package telemetry is likeness's tracing, metrics and log correlation: one
// Setup call configured from the standard OTEL_* environment variables, the
// trace model that ties a run's tasks together across Redis, the metrics
// served as Prometheus text on /metrics, and an slog.Handler that stamps
// trace_id and span_id on every record made inside a span.
//
// # Lifecycle
//
// The producer opens the run's root span and gives every task headers that
// carry W3C trace context through asynq:
//
//	ctx, span := tel.StartRun(ctx, runID, len(tasks)) // root span "submit"
//	defer span.End()
//	for _, t := range tasks {
//		h := telemetry.TaskHeaders(ctx, t.ID)
//		q.EnqueueContext(ctx, asynq.NewTaskWithHeaders(task.TypeGenerate, payload, h), ...)
//	}
//
// The worker wraps its handlers in [Telemetry.Middleware], which starts a
// consumer span per attempt from those headers (the run root's child) and
// sets its status from the handler's error. Inside, the worker opens child
// spans with [Start] (limit wait, provider submit, poll, download, output
// check, store), records retries and requeues with [Retry] and [Requeue],
// enqueues run:finalize with [RunHeaders] so finalize lands in the run's
// trace, and copies [TraceID] into every manifest record.
//
// A run with more tasks than Config.TraceLinkThreshold (default 2,000) would
// make one unbounded trace, so it switches to a trace per task: TaskHeaders
// starts each task's trace with a short "enqueue" span that carries a span
// link to the run root, and every attempt of that task joins that trace.
// The consumer span links to the run root too.
//
// # What is recorded
//
// Consumer spans follow the OpenTelemetry messaging conventions:
// messaging.system is "asynq" (asynq is not in the conventions' list of
// systems, which allows a custom value; "redis" would name the storage, not
// the messaging protocol), messaging.operation.type and .name are
// "process", messaging.destination.name is the queue and messaging.message.id
// the asynq task id. Provider HTTP calls get http.* spans and metrics from
// otelhttp through [Telemetry.Transport]; provider calls can carry the
// gen_ai.* attributes of [GenAI]. likeness's own attributes are made only by
// the helpers in attr.go ([RunID], [TaskID], [Model], [Provider], [Attempt],
// [CostUSD], [Class]), which take single scalar values: nothing here takes a
// payload, a map or an image, so secrets and image bytes have no way into a
// span. The values in URL query strings (signed download links carry
// credentials there) are redacted from Transport's url.full and from error
// text recorded as span status.
//
// Metrics carry only low-cardinality labels (provider, model, state, class,
// check, limit, reason, queue), never run or task ids; see [Metrics] for the
// names. They are always served by [Telemetry.MetricsHandler] from a private
// Prometheus registry, whatever OTEL_METRICS_EXPORTER says.
//
// # Configuration
//
// Setup reads OTEL_TRACES_EXPORTER (otlp, console, none),
// OTEL_METRICS_EXPORTER (otlp, prometheus, console, none), OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER(_ARG) and OTEL_SDK_DISABLED
// itself. The otlp and prometheus exporters are built by
// go.opentelemetry.io/contrib/exporters/autoexport and read their endpoint,
// protocol, headers, TLS and timeout variables (OTEL_EXPORTER_OTLP_*,
// OTEL_EXPORTER_PROMETHEUS_*) from the process environment. With nothing set
// nothing is exported and nothing connects anywhere: unlike autoexport's
// default, an unset OTEL_*_EXPORTER means otlp only when an
// OTEL_EXPORTER_OTLP_*ENDPOINT is set.
//
// Telemetry never fails a task: recording has no error results, exporters
// connect lazily and drop what they cannot send. A nil *Telemetry and a nil
// *Metrics are valid and record nothing.
package telemetry
