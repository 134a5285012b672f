package telemetry

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// exporterName returns the exporter an OTEL_*_EXPORTER variable selects,
// except that unset means "none" unless an OTLP endpoint is configured for
// the signal: autoexport would otherwise send to localhost:4318 and log an
// error for every batch it cannot deliver.
func exporterName(getenv func(string) string, variable, signalEndpoint string) string {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return "none"
	}
	name := strings.TrimSpace(getenv(variable))
	if name != "" {
		return name
	}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv(signalEndpoint) != "" {
		return "otlp"
	}
	return "none"
}

// newSpanExporter returns the span exporter OTEL_TRACES_EXPORTER selects,
// or nil for none.
func newSpanExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	switch name := exporterName(cfg.Getenv, "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); name {
	case "none":
		return nil, nil
	case "console":
		e, err := stdouttrace.New(stdouttrace.WithWriter(cfg.ConsoleWriter))
		if err != nil {
			return nil, fmt.Errorf("telemetry: console span exporter: %w", err)
		}
		return e, nil
	case "otlp":
		e, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%s: %w", name, err)
		}
		if autoexport.IsNoneSpanExporter(e) {
			return nil, nil
		}
		return e, nil
	default:
		return nil, fmt.Errorf("telemetry: OTEL_TRACES_EXPORTER=%q is not one of otlp, console, none", name)
	}
}

// newMetricReader returns the extra metric reader OTEL_METRICS_EXPORTER
// selects, or nil for none. /metrics is served whatever it says.
func newMetricReader(ctx context.Context, cfg Config) (sdkmetric.Reader, error) {
	switch name := exporterName(cfg.Getenv, "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"); name {
	case "none":
		return nil, nil
	case "console":
		e, err := stdoutmetric.New(stdoutmetric.WithWriter(cfg.ConsoleWriter))
		if err != nil {
			return nil, fmt.Errorf("telemetry: console metric exporter: %w", err)
		}
		return sdkmetric.NewPeriodicReader(e), nil
	case "otlp", "prometheus": // prometheus: autoexport's own server, OTEL_EXPORTER_PROMETHEUS_HOST:PORT
		r, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTEL_METRICS_EXPORTER=%s: %w", name, err)
		}
		if autoexport.IsNoneMetricReader(r) {
			return nil, nil
		}
		return r, nil
	default:
		return nil, fmt.Errorf("telemetry: OTEL_METRICS_EXPORTER=%q is not one of otlp, prometheus, console, none", name)
	}
}

// newSampler reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG. The
// default is parentbased_always_on, as in the SDK.
func newSampler(getenv func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER")))
	arg := strings.TrimSpace(getenv("OTEL_TRACES_SAMPLER_ARG"))
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1", arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER=%q is not one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio", name)
}

// newResource describes this process: service name and version, the
// attributes of OTEL_RESOURCE_ATTRIBUTES, host, pid and SDK. Malformed
// entries of OTEL_RESOURCE_ATTRIBUTES are skipped with a warning.
func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	var attrs []attribute.KeyValue
	seen := map[attribute.Key]bool{}
	if env := cfg.Getenv("OTEL_RESOURCE_ATTRIBUTES"); env != "" {
		for _, pair := range strings.Split(env, ",") {
			if strings.TrimSpace(pair) == "" {
				continue
			}
			k, v, ok := strings.Cut(pair, "=")
			k = strings.TrimSpace(k)
			if ok {
				var err error
				v, err = url.PathUnescape(strings.TrimSpace(v))
				ok = err == nil
			}
			if !ok || k == "" {
				cfg.Logger.WarnContext(ctx, "telemetry: skipping malformed OTEL_RESOURCE_ATTRIBUTES entry", "entry", pair)
				continue
			}
			attrs = append(attrs, attribute.String(k, v))
			seen[attribute.Key(k)] = true
		}
	}
	if name := strings.TrimSpace(cfg.Getenv("OTEL_SERVICE_NAME")); name != "" {
		attrs = append(attrs, semconv.ServiceName(name))
	} else if !seen[semconv.ServiceNameKey] {
		attrs = append(attrs, semconv.ServiceName(cfg.ServiceName))
	}
	if cfg.ServiceVersion != "" && !seen[semconv.ServiceVersionKey] {
		attrs = append(attrs, semconv.ServiceVersion(cfg.ServiceVersion))
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
		resource.WithAttributes(attrs...),
	)
	if err != nil {
		// Detectors report partial failures (say, no hostname) along with a
		// usable resource; only a missing resource is worth failing over.
		if res == nil {
			return nil, fmt.Errorf("telemetry: resource: %w", err)
		}
		cfg.Logger.WarnContext(ctx, "telemetry: incomplete resource", "err", err)
	}
	return res, nil
}
