package telemetry

import (
	"net/http"
	"net/url"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Transport wraps base (http.DefaultTransport if nil) so every request is
// a client span with http.* attributes and is counted in the http.client.*
// metrics, for the provider adapters' HTTP clients. Trace context is not
// sent to providers, and query strings are redacted from url.full. On a nil
// Telemetry it returns base unchanged.
func (t *Telemetry) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if t == nil {
		return base
	}
	return otelhttp.NewTransport(redactQuery{base},
		otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithMeterProvider(t.mp),
		// Providers are third parties: our trace ids are none of their business.
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + r.URL.Host
		}),
	)
}

// redactQuery is the transport otelhttp calls: otelhttp has just set
// url.full on the request's span, and redactQuery replaces it with the
// query's values redacted before the request goes out. Signed download
// links carry credentials in their query.
type redactQuery struct{ base http.RoundTripper }

func (t redactQuery) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.RawQuery != "" || r.URL.Fragment != "" {
		u := *r.URL
		u.User = nil
		if red, ok := redactURL(u.String()); ok {
			trace.SpanFromContext(r.Context()).SetAttributes(semconv.URLFull(red))
		}
	}
	return t.base.RoundTrip(r)
}

// redactURL keeps the query's parameter names and replaces their values,
// and drops any fragment. It reports whether it changed anything.
func redactURL(raw string) (string, bool) {
	if !strings.ContainsAny(raw, "?#") {
		return raw, false
	}
	u, err := url.Parse(raw)
	if err != nil {
		base, _, _ := strings.Cut(raw, "?")
		base, _, _ = strings.Cut(base, "#")
		return base + "?REDACTED", true
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String(), true
}
