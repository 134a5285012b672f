package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/likeness-run/likeness/pkg/telemetry"
	"github.com/likeness-run/likeness/pkg/telemetry/telemetrytest"
)

func TestPropagationRoundTrip(t *testing.T) {
	t.Parallel()
	tel, _ := telemetrytest.New(t, telemetry.Config{})
	ctx, span := tel.Tracer().Start(context.Background(), "producer")
	defer span.End()

	h := telemetry.Inject(ctx, nil)
	if !strings.HasPrefix(h["traceparent"], "00-"+span.SpanContext().TraceID().String()+"-") {
		t.Fatalf("traceparent = %q, want the span's trace", h["traceparent"])
	}
	got := trace.SpanContextFromContext(telemetry.Extract(context.Background(), h))
	if !got.IsRemote() || got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("extracted %v, want remote %v", got, span.SpanContext())
	}

	// Existing headers are kept; nothing is injected without a span.
	h = telemetry.Inject(context.Background(), map[string]string{"x": "y"})
	if diff := cmp.Diff(map[string]string{"x": "y"}, h); diff != "" {
		t.Errorf("Inject without a span changed headers (-want +got):\n%s", diff)
	}
	// Garbage is ignored.
	bad := telemetry.Extract(context.Background(), map[string]string{"traceparent": "00-zz-zz-01"})
	if trace.SpanContextFromContext(bad).IsValid() {
		t.Error("malformed traceparent produced a span context")
	}
}

// consume simulates a worker receiving one delivery: the task carries the
// producer's headers through asynq.
func consume(tel *telemetry.Telemetry, typ string, headers map[string]string) context.Context {
	ctx, span := tel.StartTask(context.Background(), asynq.NewTaskWithHeaders(typ, []byte(`{}`), headers))
	span.End()
	return ctx
}

func TestRunIsOneTrace(t *testing.T) {
	t.Parallel()
	tel, rec := telemetrytest.New(t, telemetry.Config{})
	runCtx, root := tel.StartRun(context.Background(), "run-1", 2)
	h1 := telemetry.TaskHeaders(runCtx, "t1")
	h2 := telemetry.TaskHeaders(runCtx, "t2")
	root.End()

	ctx1 := consume(tel, "image:generate", h1)
	consume(tel, "image:generate", h2)
	consume(tel, "image:generate", h1) // a retry of t1
	consume(tel, "run:finalize", telemetry.RunHeaders(ctx1))

	rootSpan := one(t, rec, telemetry.SpanSubmit)
	rootSC := rootSpan.SpanContext()
	if rootSpan.Parent().IsValid() {
		t.Errorf("submit span has parent %v, want none: it is the run's root", rootSpan.Parent())
	}
	if got := attrs(rootSpan.Attributes()); got["likeness.run.id"] != "run-1" || got["likeness.run.trace_per_task"] != "false" {
		t.Errorf("submit attributes = %v", got)
	}
	tasks := named(rec, "process image:generate")
	if len(tasks) != 3 {
		t.Fatalf("%d consumer spans, want 3", len(tasks))
	}
	var ids []string
	for _, s := range append(tasks, one(t, rec, "process run:finalize")) {
		if s.SpanContext().TraceID() != rootSC.TraceID() {
			t.Errorf("%s: trace %s, want the run's %s", s.Name(), s.SpanContext().TraceID(), rootSC.TraceID())
		}
		if s.Parent().SpanID() != rootSC.SpanID() {
			t.Errorf("%s: parent %s, want the root %s", s.Name(), s.Parent().SpanID(), rootSC.SpanID())
		}
		if len(s.Links()) != 0 {
			t.Errorf("%s: %d links, want none in a small run", s.Name(), len(s.Links()))
		}
		if s.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("%s: kind %v, want consumer", s.Name(), s.SpanKind())
		}
		a := attrs(s.Attributes())
		if a["likeness.run.id"] != "run-1" || a["messaging.system"] != "asynq" || a["messaging.operation.type"] != "process" {
			t.Errorf("%s: attributes %v", s.Name(), a)
		}
		ids = append(ids, a["likeness.task.id"])
	}
	if diff := cmp.Diff([]string{"t1", "t2", "t1", ""}, ids); diff != "" {
		t.Errorf("likeness.task.id of consumer spans (-want +got):\n%s", diff)
	}
	if got := telemetry.TraceID(ctx1); got != rootSC.TraceID().String() {
		t.Errorf("TraceID(task ctx) = %q, want %q", got, rootSC.TraceID())
	}
	if len(named(rec, telemetry.SpanEnqueue)) != 0 {
		t.Error("small run made enqueue spans")
	}
}

func TestRunPastThresholdLinksTaskTraces(t *testing.T) {
	t.Parallel()
	tel, rec := telemetrytest.New(t, telemetry.Config{TraceLinkThreshold: 2})
	runCtx, root := tel.StartRun(context.Background(), "run-big", 3)
	var headers []map[string]string
	for _, id := range []string{"t1", "t2", "t3"} {
		headers = append(headers, telemetry.TaskHeaders(runCtx, id))
	}
	root.End()
	rootSC := one(t, rec, telemetry.SpanSubmit).SpanContext()

	var last context.Context
	for _, h := range headers {
		last = consume(tel, "image:generate", h)
	}
	consume(tel, "image:generate", headers[0]) // a retry of t1
	consume(tel, "run:finalize", telemetry.RunHeaders(last))

	enqueue := named(rec, telemetry.SpanEnqueue)
	if len(enqueue) != 3 {
		t.Fatalf("%d enqueue spans, want one per task", len(enqueue))
	}
	tasks := named(rec, "process image:generate")
	if len(tasks) != 4 {
		t.Fatalf("%d consumer spans, want 4", len(tasks))
	}
	seen := map[trace.TraceID]bool{rootSC.TraceID(): true}
	for i, s := range tasks {
		tid := s.SpanContext().TraceID()
		if i < 3 {
			if seen[tid] {
				t.Errorf("task %d shares trace %s with the run or another task", i, tid)
			}
			seen[tid] = true
			if p := enqueue[i].SpanContext(); s.Parent().SpanID() != p.SpanID() || tid != p.TraceID() {
				t.Errorf("task %d: parent %v, want its enqueue span %v", i, s.Parent(), p)
			}
		}
		if len(s.Links()) != 1 || s.Links()[0].SpanContext.SpanID() != rootSC.SpanID() || s.Links()[0].SpanContext.TraceID() != rootSC.TraceID() {
			t.Errorf("task %d: links %v, want one to the run root %v", i, s.Links(), rootSC)
		}
	}
	for i, s := range enqueue {
		if s.Parent().IsValid() || len(s.Links()) != 1 || s.Links()[0].SpanContext.SpanID() != rootSC.SpanID() {
			t.Errorf("enqueue %d: parent %v links %v, want a new root linked to the run", i, s.Parent(), s.Links())
		}
	}
	if tasks[3].SpanContext().TraceID() != tasks[0].SpanContext().TraceID() {
		t.Error("a retry of a task did not join the task's trace")
	}
	fin := one(t, rec, "process run:finalize")
	if fin.SpanContext().TraceID() != rootSC.TraceID() || fin.Parent().SpanID() != rootSC.SpanID() {
		t.Errorf("finalize: trace %s parent %s, want the run root %s/%s",
			fin.SpanContext().TraceID(), fin.Parent().SpanID(), rootSC.TraceID(), rootSC.SpanID())
	}
}

func TestStartTaskWithoutHeadersStartsATrace(t *testing.T) {
	t.Parallel()
	tel, rec := telemetrytest.New(t, telemetry.Config{})
	// A stray span in ctx must not adopt the task.
	ctx, stray := tel.Tracer().Start(context.Background(), "stray")
	_, span := tel.StartTask(ctx, asynq.NewTask("image:generate", nil))
	span.End()
	stray.End()
	s := one(t, rec, "process image:generate")
	if s.Parent().IsValid() {
		t.Errorf("parent %v, want a new root", s.Parent())
	}
}

// secret is a fake provider key; it must never reach a span.
const secret = "sk-test-SECRET"

func TestMiddlewareRecordsAttemptsNotPayloads(t *testing.T) {
	t.Parallel()
	payload := []byte(fmt.Sprintf(`{"run_id":"r","task_id":"t","prompt_text":"a cat","api_key":%q,"image":"iVBORw0KGgo="}`, secret))
	failure := errors.New("download https://cdn.example.com/out.png?sig=SIGNATURE&se=2030: 403 Forbidden")

	tests := []struct {
		name       string
		handler    func(ctx context.Context, task *asynq.Task) error
		wantStatus codes.Code
		wantDesc   string
		wantEvents []string
	}{
		{
			name:       "success",
			handler:    func(context.Context, *asynq.Task) error { return nil },
			wantStatus: codes.Unset,
		},
		{
			name: "failure will be retried",
			handler: func(ctx context.Context, _ *asynq.Task) error {
				telemetry.Retry(ctx, "transient", 4*time.Second)
				return failure
			},
			wantStatus: codes.Error,
			wantDesc:   "download https://cdn.example.com/out.png?REDACTED 403 Forbidden",
			wantEvents: []string{"retry class=transient wait=4"},
		},
		{
			name: "requeue is not a failure",
			handler: func(ctx context.Context, _ *asynq.Task) error {
				telemetry.Requeue(ctx, "rate", 30*time.Second)
				return errors.New("requeued for 30s: replicate 429 rate")
			},
			wantStatus: codes.Unset,
			wantEvents: []string{"requeue class=rate wait=30"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, rec := telemetrytest.New(t, telemetry.Config{})
			runCtx, root := tel.StartRun(context.Background(), "r", 1)
			task := asynq.NewTaskWithHeaders("image:generate", payload, telemetry.TaskHeaders(runCtx, "t"))
			root.End()

			h := tel.Middleware()(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
				ctx, child := telemetry.Start(ctx, telemetry.SpanProviderSubmit, telemetry.Model("flux"))
				child.End()
				return tt.handler(ctx, task)
			}))
			_ = h.ProcessTask(context.Background(), task)

			s := one(t, rec, "process image:generate")
			if s.Status().Code != tt.wantStatus || s.Status().Description != tt.wantDesc {
				t.Errorf("status = %v %q, want %v %q", s.Status().Code, s.Status().Description, tt.wantStatus, tt.wantDesc)
			}
			var events []string
			for _, e := range s.Events() {
				a := attrs(e.Attributes)
				events = append(events, fmt.Sprintf("%s class=%s wait=%s", e.Name, a["likeness.class"], a["likeness.wait_seconds"]))
			}
			if diff := cmp.Diff(tt.wantEvents, events); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			child := one(t, rec, telemetry.SpanProviderSubmit)
			if child.Parent().SpanID() != s.SpanContext().SpanID() {
				t.Errorf("Start made a span with parent %v, want the consumer span", child.Parent())
			}
			for _, span := range rec.Ended() {
				all := everything(span)
				for _, leak := range []string{secret, "SIGNATURE", "iVBORw0KGgo", "a cat"} {
					if strings.Contains(all, leak) {
						t.Errorf("span %q carries %q:\n%s", span.Name(), leak, all)
					}
				}
			}
		})
	}
}

func TestMiddlewareMarksPanics(t *testing.T) {
	t.Parallel()
	tel, rec := telemetrytest.New(t, telemetry.Config{})
	h := tel.Middleware()(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { panic("boom") }))
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the handler's panic re-raised", r)
			}
		}()
		_ = h.ProcessTask(context.Background(), asynq.NewTask("image:generate", nil))
	}()
	if s := one(t, rec, "process image:generate"); s.Status().Code != codes.Error {
		t.Errorf("status %v, want Error", s.Status())
	}
}

func TestEnd(t *testing.T) {
	t.Parallel()
	tel, rec := telemetrytest.New(t, telemetry.Config{})
	ctx, parent := tel.Tracer().Start(context.Background(), "parent")
	_, ok := telemetry.Start(ctx, telemetry.SpanStore)
	telemetry.End(ok, nil)
	_, bad := telemetry.Start(ctx, telemetry.SpanCheck)
	telemetry.End(bad, errors.New("blank image"))
	parent.End()
	if s := one(t, rec, telemetry.SpanStore); s.Status().Code != codes.Unset {
		t.Errorf("store status %v, want unset", s.Status())
	}
	if s := one(t, rec, telemetry.SpanCheck); s.Status().Code != codes.Error || s.Status().Description != "blank image" {
		t.Errorf("check status %v, want Error blank image", s.Status())
	}
	// Without a span in ctx, Start records nothing and does not panic.
	_, none := telemetry.Start(context.Background(), "orphan")
	telemetry.End(none, errors.New("x"))
	if len(named(rec, "orphan")) != 0 {
		t.Error("Start without a parent recorded a span")
	}
}

func TestNilTelemetryRecordsNothing(t *testing.T) {
	t.Parallel()
	var tel *telemetry.Telemetry
	ctx, root := tel.StartRun(context.Background(), "r", 5)
	h := telemetry.TaskHeaders(ctx, "t1")
	if diff := cmp.Diff(map[string]string{"likeness-run-id": "r", "likeness-task-id": "t1"}, h); diff != "" {
		t.Errorf("TaskHeaders on a nil Telemetry (-want +got):\n%s", diff)
	}
	root.End()
	err := tel.Middleware()(asynq.HandlerFunc(func(ctx context.Context, _ *asynq.Task) error {
		tel.Metrics().TaskDone(ctx, "sim", "m", "succeeded", "")
		return nil
	})).ProcessTask(context.Background(), asynq.NewTaskWithHeaders("image:generate", nil, h))
	if err != nil {
		t.Fatal(err)
	}
	if telemetry.TraceID(ctx) != "" {
		t.Error("nil Telemetry made a trace id")
	}
	tel.Metrics().RegisterQueueStats(nil)()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}
