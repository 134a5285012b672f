package telemetry_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"

	"github.com/likeness-run/likeness/pkg/telemetry"
)

// A run from submit to a finished task: the producer opens the run's root
// span and gives each task trace headers; the worker's middleware starts a
// consumer span in the run's trace; the handler opens child spans, counts
// the task and finds the trace id for the manifest record; /metrics shows
// the count.
func Example() {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, telemetry.Config{
		ServiceName: "likeness-worker",
		// As if no OTEL_* variable were set: nothing is exported.
		Getenv: func(string) string { return "" },
	})
	if err != nil {
		panic(err)
	}
	defer tel.Shutdown(ctx)

	// Producer (scheduler): one root span per run, headers per task.
	runCtx, run := tel.StartRun(ctx, "run-1", 1)
	task := asynq.NewTaskWithHeaders("image:generate", []byte(`{"task_id":"t1"}`), telemetry.TaskHeaders(runCtx, "t1"))
	run.End()

	// Consumer (worker): the middleware wraps every handler.
	mux := asynq.NewServeMux()
	mux.Use(tel.Middleware())
	mux.HandleFunc("image:generate", func(ctx context.Context, _ *asynq.Task) error {
		ctx, span := telemetry.Start(ctx, telemetry.SpanProviderSubmit, telemetry.GenAI("sim", "fast")...)
		// ... the provider call, through &http.Client{Transport: tel.Transport(nil)} ...
		telemetry.End(span, nil)
		tel.Metrics().ProviderLatency(ctx, "sim", "sim:fast", 2*time.Second)
		tel.Metrics().TaskDone(ctx, "sim", "sim:fast", "succeeded", "")
		fmt.Println("record's trace id is the run's:", telemetry.TraceID(ctx) == telemetry.TraceID(runCtx))
		return nil
	})
	_ = mux.ProcessTask(ctx, task) // an asynq.Server does this after dequeueing

	rr := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rr.Body.String()) {
		if strings.HasPrefix(line, "likeness_tasks_total") {
			fmt.Print(line)
		}
	}
	// Output:
	// record's trace id is the run's: true
	// likeness_tasks_total{class="",model="sim:fast",provider="sim",state="succeeded"} 1
}

// Wiring in main: configuration from the environment, logs correlated with
// traces, /metrics on the metrics address, a bounded flush on the way out.
func ExampleSetup() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(os.Stderr, nil)))

	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "likeness-worker", ServiceVersion: "v0.1.0", Logger: log})
	if err != nil {
		log.Error("telemetry", "err", err)
		return
	}
	otel.SetErrorHandler(telemetry.ErrorHandler(log))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx)
	}()

	inspector := asynq.NewInspector(asynq.RedisClientOpt{Addr: "127.0.0.1:6379"})
	defer inspector.Close()
	defer tel.Metrics().RegisterQueueStats(telemetry.InspectorQueueStats(inspector))()

	mux := http.NewServeMux()
	mux.Handle("/metrics", tel.MetricsHandler())
	srv := &http.Server{Addr: "127.0.0.1:9090", Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ListenAndServe() }()
	defer srv.Close()

	// Provider adapters get an instrumented HTTP client; the worker gets
	// tel (Middleware, Metrics) in its Config.
	_ = &http.Client{Transport: tel.Transport(nil)}
	<-ctx.Done()
}
