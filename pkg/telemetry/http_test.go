package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/likeness-run/likeness/pkg/telemetry"
	"github.com/likeness-run/likeness/pkg/telemetry/telemetrytest"
)

func TestTransport(t *testing.T) {
	t.Parallel()
	tel, rec := telemetrytest.New(t, telemetry.Config{})
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()

	ctx, parent := tel.Tracer().Start(context.Background(), "process image:generate")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/out.png?sig=SIGNATURE&se=2030", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := (&http.Client{Transport: tel.Transport(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()

	if h := <-got; h.Get("traceparent") != "" {
		t.Errorf("trace context sent to a third party: %q", h.Get("traceparent"))
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	s := one(t, rec, "GET "+host)
	if s.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("HTTP span parent %s, want the task span", s.Parent().SpanID())
	}
	a := attrs(s.Attributes())
	if want := srv.URL + "/out.png?se=REDACTED&sig=REDACTED"; a["url.full"] != want {
		t.Errorf("url.full = %q, want %q", a["url.full"], want)
	}
	if a["http.response.status_code"] != "429" {
		t.Errorf("http.response.status_code = %q", a["http.response.status_code"])
	}
	if all := everything(s); strings.Contains(all, "SIGNATURE") || strings.Contains(all, secret) {
		t.Errorf("HTTP span carries a credential:\n%s", all)
	}
	if _, ok := telemetrytest.Value(telemetrytest.Scrape(t, tel), "http_client_request_duration_seconds", nil); !ok {
		t.Error("no http_client_request_duration_seconds on /metrics")
	}
}
