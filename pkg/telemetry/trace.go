package telemetry

import (
	"context"
	"regexp"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Span names. Consumer spans are named "process <task type>".
const (
	// SpanSubmit is the run's root span, started by StartRun.
	SpanSubmit = "submit"
	// SpanEnqueue roots a task's own trace in runs past the link threshold.
	SpanEnqueue = "enqueue"
	// Children of a task's consumer span, for the worker's steps.
	SpanLimitWait      = "limit.wait"
	SpanProviderSubmit = "provider.submit"
	SpanProviderPoll   = "provider.poll"
	SpanDownload       = "output.download"
	SpanCheck          = "output.check"
	SpanStore          = "output.store"
)

// Task header names. traceparent and tracestate are W3C trace context.
const (
	headerRunID  = "likeness-run-id"
	headerTaskID = "likeness-task-id"
	// headerRunRoot is the run root's traceparent in runs that give each
	// task its own trace: the consumer links to it instead of joining it.
	headerRunRoot = "likeness-run-traceparent"
)

// propagator is W3C trace context. It is stateless.
var propagator = propagation.TraceContext{}

// Inject writes ctx's span context into headers as W3C traceparent (and
// tracestate) and returns headers, allocated if nil. Without a valid span
// in ctx it adds nothing.
func Inject(ctx context.Context, headers map[string]string) map[string]string {
	if headers == nil {
		headers = make(map[string]string, 2)
	}
	propagator.Inject(ctx, propagation.MapCarrier(headers))
	return headers
}

// Extract returns ctx carrying the remote span context in headers, or ctx
// unchanged if headers carry none or a malformed one.
func Extract(ctx context.Context, headers map[string]string) context.Context {
	return propagator.Extract(ctx, propagation.MapCarrier(headers))
}

// TraceID returns the hex trace id of the span in ctx, or "" without one,
// for manifest records and logs.
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// runInfo is what a context knows about its run: set by StartRun on the
// producer and by StartTask on the consumer.
type runInfo struct {
	id      string
	root    trace.SpanContext
	perTask bool // each task gets its own trace (producer side only)
}

type runKey struct{}

func runFrom(ctx context.Context) runInfo {
	ri, _ := ctx.Value(runKey{}).(runInfo)
	return ri
}

// taskState is per attempt: the consumer span, which Retry and Requeue
// record on from any child span's context, and whether Requeue was called,
// so that Middleware does not take the handler's error for a failure.
type taskState struct {
	span     trace.Span
	requeued atomic.Bool
}

type taskKey struct{}

// StartRun starts the run's root span, "submit". The returned context is
// what TaskHeaders takes. A span already in ctx (an HTTP request, say) is
// linked, not made the parent: the run is its own trace. Runs of more than
// Config.TraceLinkThreshold tasks give each task a trace of its own.
func (t *Telemetry) StartRun(ctx context.Context, runID string, tasks int) (context.Context, trace.Span) {
	perTask := false
	if t != nil && t.cfg.TraceLinkThreshold > 0 {
		perTask = tasks > t.cfg.TraceLinkThreshold
	}
	opts := []trace.SpanStartOption{
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(RunID(runID), keyRunTasks.Int(tasks), keyPerTask.Bool(perTask)),
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	ctx, span := t.Tracer().Start(ctx, SpanSubmit, opts...)
	return context.WithValue(ctx, runKey{}, runInfo{id: runID, root: span.SpanContext(), perTask: perTask}), span
}

// TaskHeaders returns the asynq headers of one task of the run started by
// StartRun in runCtx, for asynq.NewTaskWithHeaders. Normally they make the
// task's spans children of the span in runCtx (the run root). In a run past
// the link threshold they start a new trace for the task: a short
// "enqueue" span linked to the run root, which every attempt of the task
// joins. The headers also name the run and task, so consumer spans carry
// likeness.run.id and likeness.task.id without reading the payload.
func TaskHeaders(runCtx context.Context, taskID string) map[string]string {
	ri := runFrom(runCtx)
	h := make(map[string]string, 5)
	if ri.id != "" {
		h[headerRunID] = ri.id
	}
	if taskID != "" {
		h[headerTaskID] = taskID
	}
	if !ri.perTask || !ri.root.IsValid() {
		return Inject(runCtx, h)
	}
	tracer := trace.SpanFromContext(runCtx).TracerProvider().Tracer(scope)
	ctx, span := tracer.Start(runCtx, SpanEnqueue,
		trace.WithNewRoot(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(trace.Link{SpanContext: ri.root}),
		trace.WithAttributes(RunID(ri.id), TaskID(taskID)))
	span.End()
	Inject(ctx, h)
	h[headerRunRoot] = traceparent(ri.root)
	return h
}

// RunHeaders returns asynq headers that make a task a direct child of the
// run's root span, whether ctx is the producer's run context or a task's
// context from StartTask. The worker enqueues run:finalize with them, so
// finalize is in the run's trace even when tasks have traces of their own.
func RunHeaders(ctx context.Context) map[string]string {
	ri := runFrom(ctx)
	h := make(map[string]string, 3)
	if ri.id != "" {
		h[headerRunID] = ri.id
	}
	if ri.root.IsValid() {
		return Inject(trace.ContextWithRemoteSpanContext(ctx, ri.root), h)
	}
	return Inject(ctx, h)
}

func traceparent(sc trace.SpanContext) string {
	m := propagation.MapCarrier{}
	propagator.Inject(trace.ContextWithSpanContext(context.Background(), sc), m)
	return m["traceparent"]
}

func parseTraceparent(v string) trace.SpanContext {
	if v == "" {
		return trace.SpanContext{}
	}
	ctx := propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": v})
	return trace.SpanContextFromContext(ctx)
}

// StartTask starts the consumer span of one attempt of task, from the
// headers TaskHeaders or RunHeaders gave it: the run root's child, or in a
// run past the link threshold a span in the task's own trace with a link to
// the run root. A task without trace headers starts a new trace. Called
// inside an asynq handler it records the queue, the task id and the attempt
// from ctx. Middleware calls it for every handler; end the span yourself
// when calling it directly.
func (t *Telemetry) StartTask(ctx context.Context, task *asynq.Task, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	headers := task.Headers()
	parent := trace.SpanContextFromContext(Extract(context.Background(), headers))

	ri := runInfo{id: headers[headerRunID], root: parent}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	if root := parseTraceparent(headers[headerRunRoot]); root.IsValid() {
		ri.root = root
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: root}))
	}
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	} else {
		// Whatever span ctx holds is not this task's producer.
		opts = append(opts, trace.WithNewRoot())
	}

	all := make([]attribute.KeyValue, 0, 9+len(attrs))
	all = append(all,
		semconv.MessagingSystemKey.String("asynq"),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		keyTaskType.String(task.Type()),
	)
	if q, ok := asynq.GetQueueName(ctx); ok {
		all = append(all, semconv.MessagingDestinationName(q))
	}
	if id, ok := asynq.GetTaskID(ctx); ok {
		all = append(all, semconv.MessagingMessageID(id))
	}
	if n, ok := asynq.GetRetryCount(ctx); ok {
		all = append(all, Attempt(n+1))
	}
	if ri.id != "" {
		all = append(all, RunID(ri.id))
	}
	if id := headers[headerTaskID]; id != "" {
		all = append(all, TaskID(id))
	}
	all = append(all, attrs...)
	opts = append(opts, trace.WithAttributes(all...))

	ctx, span := t.Tracer().Start(ctx, "process "+task.Type(), opts...)
	ctx = context.WithValue(ctx, runKey{}, ri)
	ctx = context.WithValue(ctx, taskKey{}, &taskState{span: span})
	return ctx, span
}

// Middleware wraps asynq handlers in StartTask. When the handler returns
// an error the span's status is Error with the error's text (URL query
// strings redacted), unless the handler called Requeue: a requeue is not a
// failure. A panic marks the span and is re-raised for asynq to recover.
// Use it with (*asynq.ServeMux).Use.
func (t *Telemetry) Middleware() asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) (err error) {
			ctx, span := t.StartTask(ctx, task)
			defer func() {
				if r := recover(); r != nil {
					span.SetStatus(codes.Error, "panic")
					span.End()
					panic(r)
				}
				if err != nil {
					if st, _ := ctx.Value(taskKey{}).(*taskState); st == nil || !st.requeued.Load() {
						span.SetStatus(codes.Error, redactText(err.Error()))
					}
				}
				span.End()
			}()
			return next.ProcessTask(ctx, task)
		})
	}
}

// Start starts a child of the span in ctx, for the steps of a task (see the
// Span constants), with the tracer provider of that span: code deep in the
// worker or an adapter needs no Telemetry. Without a span in ctx it returns
// a span that records nothing.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	tracer := trace.SpanFromContext(ctx).TracerProvider().Tracer(scope)
	return tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// End sets span's status to Error with err's text (URL query strings
// redacted) when err is not nil, and ends span.
func End(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, redactText(err.Error()))
	}
	span.End()
}

// Retry records on the attempt's consumer span (the span in ctx outside a
// task) an event "retry": the attempt failed with class and will be retried
// after wait, zero if the queue decides the wait later.
func Retry(ctx context.Context, class string, wait time.Duration) {
	event(ctx, "retry", class, wait)
}

// Requeue records on the attempt's consumer span an event "requeue": the
// task goes back to the queue for wait without spending an attempt, for a
// provider's rate answer (class "rate") or a fleet limit (class naming the
// limit's reason). Middleware then leaves the span's status unset for the
// handler's error.
func Requeue(ctx context.Context, class string, wait time.Duration) {
	if st, _ := ctx.Value(taskKey{}).(*taskState); st != nil {
		st.requeued.Store(true)
	}
	event(ctx, "requeue", class, wait)
}

func event(ctx context.Context, name, class string, wait time.Duration) {
	attrs := []attribute.KeyValue{Class(class)}
	if wait > 0 {
		attrs = append(attrs, keyWait.Float64(wait.Seconds()))
	}
	span := trace.SpanFromContext(ctx)
	if st, _ := ctx.Value(taskKey{}).(*taskState); st != nil {
		span = st.span
	}
	span.AddEvent(name, trace.WithAttributes(attrs...))
}

// urlQuery matches the query and fragment of URLs in free text.
var urlQuery = regexp.MustCompile(`(https?://[^\s?#"']*)[?#][^\s"']*`)

// maxStatus bounds the status description taken from an error.
const maxStatus = 512

// redactText removes the query strings of URLs (signed download links carry
// credentials there) and bounds the length.
func redactText(s string) string {
	s = urlQuery.ReplaceAllString(s, "$1?REDACTED")
	if len(s) > maxStatus {
		cut := maxStatus
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
