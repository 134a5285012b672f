package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// scope is the instrumentation scope of every tracer and meter made here.
const scope = "github.com/likeness-run/likeness"

// Config configures Setup. The zero Config is valid: every field documents
// its default.
type Config struct {
	// ServiceName is service.name when neither OTEL_SERVICE_NAME nor
	// service.name in OTEL_RESOURCE_ATTRIBUTES sets one. Default "likeness".
	ServiceName string
	// ServiceVersion is service.version and the instrumentation scope
	// version, unless OTEL_RESOURCE_ATTRIBUTES sets service.version. Empty
	// means unset.
	ServiceVersion string
	// Getenv reads the OTEL_* variables that Setup interprets itself
	// (exporter selection, service name, resource attributes, sampler).
	// Default os.Getenv. The OTLP and Prometheus exporters read their own
	// settings from the process environment whatever Getenv is.
	Getenv func(string) string
	// Logger receives Setup's and the metrics callbacks' warnings. Default
	// slog.Default().
	Logger *slog.Logger
	// TraceLinkThreshold is the largest run that is one trace. A run with
	// more tasks gives each task a trace of its own, linked to the run's root
	// span. Zero means 2000; a negative value keeps every run in one trace.
	TraceLinkThreshold int
	// ConsoleWriter receives spans and metrics when OTEL_TRACES_EXPORTER or
	// OTEL_METRICS_EXPORTER is "console". Default os.Stdout.
	ConsoleWriter io.Writer
	// SpanProcessors receive every span in addition to the configured
	// exporter; telemetrytest uses one to keep spans in memory. Setup
	// shuts them down with the rest.
	SpanProcessors []sdktrace.SpanProcessor
}

func (c Config) withDefaults() Config {
	if c.ServiceName == "" {
		c.ServiceName = "likeness"
	}
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.TraceLinkThreshold == 0 {
		c.TraceLinkThreshold = 2000
	}
	if c.ConsoleWriter == nil {
		c.ConsoleWriter = os.Stdout
	}
	return c
}

// Telemetry owns the tracer and meter providers of one process. Its methods
// are safe for concurrent use; a nil *Telemetry records nothing.
type Telemetry struct {
	cfg     Config
	tp      *sdktrace.TracerProvider
	mp      *sdkmetric.MeterProvider
	tracer  trace.Tracer
	meter   metric.Meter
	metrics *Metrics
	handler http.Handler

	// exporter and reader are what the environment selected; nil when
	// nothing is exported.
	exporter sdktrace.SpanExporter
	reader   sdkmetric.Reader

	shutdownOnce sync.Once
	shutdownErr  error
}

// Setup configures tracing and metrics from cfg and the OTEL_* environment
// (see the package documentation). It fails only on invalid configuration,
// such as an unknown exporter or sampler name; a backend that is down is not
// an error, because exporters connect lazily and drop what they cannot
// send. Call Shutdown to flush.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	cfg = cfg.withDefaults()
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sampler, err := newSampler(cfg.Getenv)
	if err != nil {
		return nil, err
	}
	exporter, err := newSpanExporter(ctx, cfg)
	if err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	prom, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithoutScopeInfo(),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
	)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("telemetry: prometheus exporter: %w", err), shutdownExporter(ctx, exporter))
	}
	reader, err := newMetricReader(ctx, cfg)
	if err != nil {
		return nil, errors.Join(err, shutdownExporter(ctx, exporter), prom.Shutdown(ctx))
	}

	topts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
	}
	if exporter != nil {
		topts = append(topts, sdktrace.WithBatcher(exporter))
	}
	for _, sp := range cfg.SpanProcessors {
		topts = append(topts, sdktrace.WithSpanProcessor(sp))
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	if reader != nil {
		mopts = append(mopts, sdkmetric.WithReader(reader))
	}

	t := &Telemetry{
		cfg:      cfg,
		tp:       sdktrace.NewTracerProvider(topts...),
		mp:       sdkmetric.NewMeterProvider(mopts...),
		exporter: exporter,
		reader:   reader,
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog:      promLogger{cfg.Logger},
			ErrorHandling: promhttp.ContinueOnError,
		}),
	}
	t.tracer = t.tp.Tracer(scope, trace.WithInstrumentationVersion(cfg.ServiceVersion))
	t.meter = t.mp.Meter(scope, metric.WithInstrumentationVersion(cfg.ServiceVersion))
	t.metrics = newMetrics(t.meter, cfg.Logger)
	return t, nil
}

// Tracer returns the tracer for likeness's own spans.
func (t *Telemetry) Tracer() trace.Tracer {
	if t == nil {
		return tracenoop.NewTracerProvider().Tracer(scope)
	}
	return t.tracer
}

// TracerProvider returns the tracer provider, for instrumentation libraries
// that take one. Setup does not install it globally; call
// otel.SetTracerProvider in main if a library only uses the global one.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil {
		return tracenoop.NewTracerProvider()
	}
	return t.tp
}

// MeterProvider returns the meter provider, for instrumentation libraries
// that take one. Whatever is recorded through it is served on /metrics too.
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil {
		return metricnoop.NewMeterProvider()
	}
	return t.mp
}

// Metrics returns likeness's instruments. It is nil, and still usable, on a
// nil Telemetry.
func (t *Telemetry) Metrics() *Metrics {
	if t == nil {
		return nil
	}
	return t.metrics
}

// MetricsHandler serves every metric as Prometheus text, for mounting on
// /metrics. It is always available, independent of OTEL_METRICS_EXPORTER,
// and also serves the Go runtime and process collectors.
func (t *Telemetry) MetricsHandler() http.Handler {
	if t == nil {
		return http.NotFoundHandler()
	}
	return t.handler
}

// Shutdown flushes and stops the exporters. It honours ctx: with a backend
// that is down it returns ctx's error when ctx ends, so give it a deadline.
// Calls after the first return the first call's result.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.shutdownOnce.Do(func() {
		t.shutdownErr = errors.Join(t.tp.Shutdown(ctx), t.mp.Shutdown(ctx))
	})
	return t.shutdownErr
}

func shutdownExporter(ctx context.Context, e sdktrace.SpanExporter) error {
	if e == nil {
		return nil
	}
	return e.Shutdown(ctx)
}

// ErrorHandler returns a handler for otel.SetErrorHandler that logs the
// SDK's own errors (an export that failed, spans dropped) to log at Warn;
// without it they go to the standard log package. Setup does not install
// it: the global belongs to main.
func ErrorHandler(log *slog.Logger) otel.ErrorHandler {
	return otel.ErrorHandlerFunc(func(err error) { log.Warn("telemetry: export", "err", err) })
}

// promLogger sends promhttp's errors to slog.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) { l.log.Warn("serve metrics", "err", fmt.Sprint(v...)) }
