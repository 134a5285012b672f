// Package telemetrytest gives other packages' tests a Telemetry that keeps
// spans in memory and serves real Prometheus text, and helpers to read both.
package telemetrytest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/likeness-run/likeness/pkg/telemetry"
)

// New returns a Telemetry whose spans are kept in the returned recorder as
// they end, and whose metrics MetricsHandler serves. It reads no
// environment: cfg.Getenv defaults to an empty environment, so nothing is
// exported whatever the developer's OTEL_* variables say, and cfg.Logger
// defaults to discarding. It is shut down when the test ends.
func New(t testing.TB, cfg telemetry.Config) (*telemetry.Telemetry, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	cfg.SpanProcessors = append(cfg.SpanProcessors, rec)
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	tel, err := telemetry.Setup(context.Background(), cfg)
	if err != nil {
		t.Fatalf("telemetry.Setup: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("telemetry.Shutdown: %v", err)
		}
	})
	return tel, rec
}

// Scrape GETs /metrics from tel's MetricsHandler and parses the Prometheus
// text, by metric family name (likeness_tasks_total, ...).
func Scrape(t testing.TB, tel *telemetry.Telemetry) map[string]*dto.MetricFamily {
	t.Helper()
	rr := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rr.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rr.Code, rr.Body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(rr.Body)
	if err != nil {
		t.Fatalf("parse /metrics as Prometheus text: %v", err)
	}
	return families
}

// Value sums the samples of the family name whose labels include every
// label in labels: counter and gauge values, a histogram's sample count.
// ok is false when no sample matches.
func Value(families map[string]*dto.MetricFamily, name string, labels map[string]string) (v float64, ok bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !matches(m, labels) {
			continue
		}
		ok = true
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v, ok
}

// LabelNames returns the label names the family name uses, sorted.
func LabelNames(families map[string]*dto.MetricFamily, name string) []string {
	seen := map[string]bool{}
	for _, m := range families[name].GetMetric() {
		for _, l := range m.GetLabel() {
			seen[l.GetName()] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// matches reports whether m has every label in labels; a wanted empty
// value matches a missing label, as in Prometheus.
func matches(m *dto.Metric, labels map[string]string) bool {
	for k, want := range labels {
		got := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == k {
				got = l.GetValue()
				break
			}
		}
		if got != want {
			return false
		}
	}
	return true
}
