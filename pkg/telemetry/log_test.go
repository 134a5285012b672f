package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/likeness-run/likeness/pkg/telemetry"
	"github.com/likeness-run/likeness/pkg/telemetry/telemetrytest"
)

func TestLogHandlerAddsTraceIDsInsideSpans(t *testing.T) {
	t.Parallel()
	tel, _ := telemetrytest.New(t, telemetry.Config{})
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil)))

	ctx, span := tel.Tracer().Start(context.Background(), "task")
	traceID, spanID := span.SpanContext().TraceID().String(), span.SpanContext().SpanID().String()

	log.InfoContext(context.Background(), "outside")
	log.InfoContext(ctx, "inside", "run_id", "r1")
	log.With("worker", "w1").WithGroup("req").With("model", "m").InfoContext(ctx, "grouped", "attempt", 2)
	log.WithGroup("g").InfoContext(context.Background(), "grouped outside")
	span.End()

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d records, want 4:\n%s", len(lines), buf.String())
	}
	recs := make([]map[string]any, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &recs[i]); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	for _, i := range []int{0, 3} {
		if _, ok := recs[i]["trace_id"]; ok {
			t.Errorf("record %q outside a span has trace_id", recs[i]["msg"])
		}
	}
	for _, i := range []int{1, 2} {
		if recs[i]["trace_id"] != traceID || recs[i]["span_id"] != spanID {
			t.Errorf("record %q: trace_id %v span_id %v, want %s %s at the top level", recs[i]["msg"], recs[i]["trace_id"], recs[i]["span_id"], traceID, spanID)
		}
	}
	if recs[1]["run_id"] != "r1" {
		t.Errorf("record attributes lost: %v", recs[1])
	}
	g, _ := recs[2]["req"].(map[string]any)
	if recs[2]["worker"] != "w1" || g["model"] != "m" || g["attempt"] != float64(2) {
		t.Errorf("grouped record lost attributes or groups: %v", recs[2])
	}
}

func TestLogHandlerEnabled(t *testing.T) {
	t.Parallel()
	h := telemetry.LogHandler(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelError) {
		t.Error("Enabled does not follow the wrapped handler")
	}
}
