package telemetry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/telemetry"
	"github.com/likeness-run/likeness/pkg/telemetry/telemetrytest"
)

// TestThroughRedis sends a run's task through a real asynq queue: the
// consumer span joins the run's trace and names the queue and the task.
func TestThroughRedis(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	redis := asynq.RedisClientOpt{Addr: addr, DB: db}
	tel, rec := telemetrytest.New(t, telemetry.Config{})

	client := asynq.NewClient(redis)
	defer client.Close()
	runCtx, root := tel.StartRun(context.Background(), "run-redis", 1)
	task := asynq.NewTaskWithHeaders("image:generate", []byte(`{"prompt_text":"`+secret+`"}`), telemetry.TaskHeaders(runCtx, "t1"))
	info, err := client.EnqueueContext(runCtx, task, asynq.Queue("gen:sim"), asynq.TaskID("gen:run-redis:t1"))
	if err != nil {
		t.Fatal(err)
	}
	root.End()

	done := make(chan string, 1)
	srv := asynq.NewServer(redis, asynq.Config{
		Concurrency: 1, Queues: map[string]int{"gen:sim": 1},
		TaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	mux.Use(tel.Middleware())
	mux.HandleFunc("image:generate", func(ctx context.Context, _ *asynq.Task) error {
		done <- telemetry.TraceID(ctx)
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()

	select {
	case got := <-done:
		if want := root.SpanContext().TraceID().String(); got != want {
			t.Errorf("handler's trace %s, want the run's %s", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("task not processed")
	}
	srv.Shutdown() // the middleware has ended the span once the server is down

	s := one(t, rec, "process image:generate")
	if s.Parent().SpanID() != root.SpanContext().SpanID() {
		t.Errorf("consumer parent %s, want the run root %s", s.Parent().SpanID(), root.SpanContext().SpanID())
	}
	want := map[string]string{
		"messaging.system":           "asynq",
		"messaging.operation.type":   "process",
		"messaging.destination.name": "gen:sim",
		"messaging.message.id":       info.ID,
		"likeness.attempt":           "1",
		"likeness.run.id":            "run-redis",
		"likeness.task.id":           "t1",
	}
	got := attrs(s.Attributes())
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if strings.Contains(everything(s), secret) {
		t.Error("the payload reached the span")
	}
}

func TestInspectorQueueStats(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	redis := asynq.RedisClientOpt{Addr: addr, DB: db}
	client := asynq.NewClient(redis)
	defer client.Close()
	for _, opts := range [][]asynq.Option{
		{asynq.Queue("gen:sim")},
		{asynq.Queue("gen:sim")},
		{asynq.Queue("control"), asynq.ProcessIn(time.Hour)},
	} {
		if _, err := client.Enqueue(asynq.NewTask("image:generate", nil), opts...); err != nil {
			t.Fatal(err)
		}
	}
	inspector := asynq.NewInspector(redis)
	defer inspector.Close()

	tel, _ := telemetrytest.New(t, telemetry.Config{})
	defer tel.Metrics().RegisterQueueStats(telemetry.InspectorQueueStats(inspector))()
	fams := telemetrytest.Scrape(t, tel)
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"queue": "gen:sim", "state": "pending"}, 2},
		{map[string]string{"queue": "control", "state": "scheduled"}, 1},
		{map[string]string{"queue": "control", "state": "pending"}, 0},
	} {
		if got, ok := telemetrytest.Value(fams, "likeness_queue_size", c.labels); !ok || got != c.want {
			t.Errorf("likeness_queue_size%v = %v (found %v), want %v", c.labels, got, ok, c.want)
		}
	}
	if got, ok := telemetrytest.Value(fams, "likeness_queue_latency_seconds", map[string]string{"queue": "gen:sim"}); !ok || got < 0 {
		t.Errorf("likeness_queue_latency_seconds{queue=gen:sim} = %v, %v", got, ok)
	}
}
