package telemetry_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/telemetry"
	"github.com/likeness-run/likeness/pkg/telemetry/telemetrytest"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestSetupConsoleWritesToConsoleWriter(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{
		Getenv:        env(map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console"}),
		ConsoleWriter: &out,
		Logger:        quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tel.StartRun(context.Background(), "run-console", 1)
	tel.Metrics().TaskDone(ctx, "sim", "sim:fast", "succeeded", "")
	span.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Name":"submit"`, `"run-console"`, `"likeness.tasks"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("console output lacks %s:\n%.2000s", want, out.String())
		}
	}
}

func TestSetupRejectsInvalidConfiguration(t *testing.T) {
	t.Parallel()
	for name, kv := range map[string]map[string]string{
		"unknown traces exporter":  {"OTEL_TRACES_EXPORTER": "zipkin"},
		"exporter list":            {"OTEL_TRACES_EXPORTER": "otlp,console"},
		"unknown metrics exporter": {"OTEL_METRICS_EXPORTER": "statsd"},
		"unknown sampler":          {"OTEL_TRACES_SAMPLER": "sometimes"},
		"sampler ratio above one":  {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if tel, err := telemetry.Setup(context.Background(), telemetry.Config{Getenv: env(kv), Logger: quiet}); err == nil {
				_ = tel.Shutdown(context.Background())
				t.Errorf("Setup accepted %v", kv)
			}
		})
	}
}

func TestSetupResourceAndSampler(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         telemetry.Config
		env         map[string]string
		wantService string
		wantAttr    map[string]string
		wantSpans   int
	}{
		{
			name: "defaults", wantService: "likeness", wantSpans: 1,
		},
		{
			name: "config name and version", cfg: telemetry.Config{ServiceName: "likeness-worker", ServiceVersion: "v1.2.3"},
			wantService: "likeness-worker", wantAttr: map[string]string{"service.version": "v1.2.3"}, wantSpans: 1,
		},
		{
			name: "environment wins", cfg: telemetry.Config{ServiceName: "likeness-worker"},
			env: map[string]string{
				"OTEL_SERVICE_NAME":        "renamed",
				"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=prod, team=image%20gen,broken",
			},
			wantService: "renamed", wantAttr: map[string]string{"deployment.environment.name": "prod", "team": "image gen"}, wantSpans: 1,
		},
		{
			name: "service.name in resource attributes", env: map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "service.name=from-attrs"},
			wantService: "from-attrs", wantSpans: 1,
		},
		{
			name: "always_off samples nothing", env: map[string]string{"OTEL_TRACES_SAMPLER": "always_off"},
			wantSpans: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.Getenv = env(tt.env)
			tel, rec := telemetrytest.New(t, cfg)
			ctx, span := tel.StartRun(context.Background(), "r", 1)
			span.End()
			if telemetry.TraceID(ctx) == "" {
				t.Error("no trace id, even unsampled spans have one")
			}
			ended := rec.Ended()
			if len(ended) != tt.wantSpans {
				t.Fatalf("%d spans recorded, want %d", len(ended), tt.wantSpans)
			}
			if tt.wantSpans == 0 {
				return
			}
			got := attrs(ended[0].Resource().Attributes())
			if got["service.name"] != tt.wantService {
				t.Errorf("service.name = %q, want %q", got["service.name"], tt.wantService)
			}
			for k, v := range tt.wantAttr {
				if got[k] != v {
					t.Errorf("resource %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// otlpSink is a local OTLP/HTTP receiver that counts requests by path.
type otlpSink struct {
	mu    sync.Mutex
	paths map[string]int
}

func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.paths[r.URL.Path]++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (s *otlpSink) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paths[path]
}

// TestSetupOTLPFlushesOnShutdown goes through autoexport, which reads the
// process environment: it sets variables, so it cannot run in parallel.
func TestSetupOTLPFlushesOnShutdown(t *testing.T) {
	sink := &otlpSink{paths: map[string]int{}}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_METRICS_EXPORTER", "")

	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := tel.StartRun(context.Background(), "r", 1)
	tel.Metrics().TaskDone(ctx, "sim", "sim:fast", "succeeded", "")
	span.End()
	if sink.count("/v1/traces") != 0 {
		t.Fatal("spans sent before Shutdown; expected batching")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if sink.count("/v1/traces") == 0 || sink.count("/v1/metrics") == 0 {
		t.Errorf("after Shutdown the collector received %v, want traces and metrics", sink.paths)
	}
}

// TestSetupWithBackendDown: a collector that is not there neither fails
// Setup nor hangs Shutdown past its context.
func TestSetupWithBackendDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+addr)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")

	tel, err := telemetry.Setup(context.Background(), telemetry.Config{Logger: quiet})
	if err != nil {
		t.Fatalf("Setup failed because the backend is down: %v", err)
	}
	_, span := tel.StartRun(context.Background(), "r", 1)
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_ = tel.Shutdown(ctx)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Shutdown took %v with a 1s context", d)
	}
}
