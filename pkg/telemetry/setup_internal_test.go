package telemetry

import (
	"context"
	"io"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestSetupSelectsExporters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		env                  map[string]string
		wantSpans, wantReads bool
	}{
		{"empty environment exports nothing", nil, false, false},
		{"none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}, false, false},
		{"console", map[string]string{"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console"}, true, true},
		{"an OTLP endpoint alone means otlp", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true, true},
		{"a traces endpoint is for traces only", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces"}, true, false},
		{"explicit none beats an endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_TRACES_EXPORTER": "none"}, false, true},
		{"OTEL_SDK_DISABLED", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tel, err := Setup(context.Background(), Config{Getenv: env(tt.env), ConsoleWriter: io.Discard})
			if err != nil {
				t.Fatal(err)
			}
			if got := tel.exporter != nil; got != tt.wantSpans {
				t.Errorf("span exporter configured = %v, want %v", got, tt.wantSpans)
			}
			if got := tel.reader != nil; got != tt.wantReads {
				t.Errorf("metric reader configured = %v, want %v", got, tt.wantReads)
			}
			if tt.wantSpans || tt.wantReads {
				// Nothing recorded, so nothing to flush to the unreachable endpoint.
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				_ = tel.Shutdown(ctx)
				return
			}
			// Spans still get ids for logs and manifest records.
			ctx, span := tel.StartRun(context.Background(), "r", 1)
			span.End()
			if TraceID(ctx) == "" {
				t.Error("no trace id")
			}
			start := time.Now()
			if err := tel.Shutdown(context.Background()); err != nil {
				t.Error(err)
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("Shutdown with nothing to export took %v", d)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://api.replicate.com/v1/predictions":                   "https://api.replicate.com/v1/predictions",
		"https://cdn.example.com/a.png?sig=abc&se=2030-01-01#frag":   "https://cdn.example.com/a.png?se=REDACTED&sig=REDACTED",
		"https://bucket.s3.amazonaws.com/k?X-Amz-Signature=deadbeef": "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=REDACTED",
	} {
		got, _ := redactURL(in)
		if got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	long := make([]byte, 2000)
	for i := range long {
		long[i] = 'x'
	}
	if got := redactText(string(long)); len(got) > maxStatus+len("…") {
		t.Errorf("redactText kept %d bytes", len(got))
	}
}
