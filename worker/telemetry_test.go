package worker_test

import (
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/telemetry"
	"github.com/likeness-run/likeness/pkg/telemetry/telemetrytest"
)

// twoByTwoByTwo is 2 characters × 2 prompts × 1 model × 2 variants, plus a
// second model: 2 × 2 × 2 = 8 tasks.
func twoByTwoByTwo(extra string) string {
	return `version: 1
name: traced
characters:
  - {id: ann, reference: ref.png}
  - {id: bob, reference: ref.png}
prompts:
  - {id: p0, text: "first"}
  - {id: p1, text: "second"}
models:
  - {id: m, model: "sim:kontext", params: {size: 64, aspect_ratio: "1:1"}}
  - {id: n, model: "sim:seededit", params: {size: 64, aspect_ratio: "1:1"}}
seed: 3
` + extra
}

func byName(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func TestOneTracePerRun(t *testing.T) {
	t.Parallel()
	tel, rec := telemetrytest.New(t, telemetry.Config{})
	gen := &scripted{script: map[string][]step{
		"first": {func(provider.Request) (*provider.Result, error) {
			return nil, &provider.Error{Class: provider.Rate, Provider: "sim", Status: 429, Message: "throttled", RetryAfter: time.Second}
		}},
	}}
	addr, db := testenv.RedisDB(t)
	b := setupOn(t, addr, db, gen, nil, options{tel: tel, concurrency: 1})
	st, recs := b.run(loadSpec(t, twoByTwoByTwo("")))
	if st.Succeeded != 8 {
		t.Fatalf("%d succeeded; want 8", st.Succeeded)
	}
	spans := rec.Ended()
	roots := byName(spans, telemetry.SpanSubmit)
	if len(roots) != 1 {
		t.Fatalf("%d submit spans; want 1", len(roots))
	}
	root := roots[0]
	traceID := root.SpanContext().TraceID()
	for _, s := range spans {
		if s.SpanContext().TraceID() != traceID {
			t.Errorf("span %s is in trace %s; the run's trace is %s", s.Name(), s.SpanContext().TraceID(), traceID)
		}
	}
	attempts := byName(spans, "process image:generate")
	if len(attempts) != 9 { // 8 tasks, one of them requeued once
		t.Errorf("%d attempt spans; want 9 (8 tasks + 1 requeue)", len(attempts))
	}
	ids := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		ids[s.SpanContext().SpanID()] = s
	}
	for _, a := range attempts {
		if a.Parent().SpanID() != root.SpanContext().SpanID() {
			t.Errorf("attempt span's parent is %v; want the submit span", a.Parent().SpanID())
		}
	}
	for _, name := range []string{telemetry.SpanLimitWait, telemetry.SpanProviderSubmit, telemetry.SpanCheck, telemetry.SpanStore} {
		for _, s := range byName(spans, name) {
			if p, ok := ids[s.Parent().SpanID()]; !ok || p.Name() != "process image:generate" {
				t.Errorf("%s span is not a child of an attempt span", name)
			}
		}
	}
	fin := byName(spans, "process run:finalize")
	if len(fin) != 1 || fin[0].Parent().SpanID() != root.SpanContext().SpanID() {
		t.Errorf("finalize: %d spans; want 1, a child of submit", len(fin))
	}
	// The requeued attempt says so, with its wait.
	requeued := 0
	for _, a := range attempts {
		for _, e := range a.Events() {
			if e.Name == "requeue" {
				requeued++
			}
		}
	}
	if requeued != 1 {
		t.Errorf("%d requeue events; want 1", requeued)
	}
	for _, r := range recs {
		if r.TraceID != traceID.String() {
			t.Errorf("record %s has trace id %q; want %s", r.Task, r.TraceID, traceID)
		}
	}

	// /metrics agrees with the manifest.
	fams := telemetrytest.Scrape(t, tel)
	counts := map[manifest.Status]int{}
	for _, r := range recs {
		counts[r.Status]++
	}
	for status, n := range counts {
		var sum float64
		for _, model := range []string{"sim:kontext", "sim:seededit"} {
			v, _ := telemetrytest.Value(fams, "likeness_tasks_total", map[string]string{"state": string(status), "model": model})
			sum += v
		}
		if int(sum) != n {
			t.Errorf("likeness_tasks_total{state=%q} = %v; the manifest has %d", status, sum, n)
		}
	}
	if v, _ := telemetrytest.Value(fams, "likeness_provider_rate_limited_total", map[string]string{"provider": "sim"}); v != 1 {
		t.Errorf("likeness_provider_rate_limited_total = %v; want 1", v)
	}
	for _, name := range telemetrytest.LabelNames(fams, "likeness_tasks_total") {
		if name == "task" || name == "run" || name == "task_id" || name == "run_id" {
			t.Errorf("likeness_tasks_total has the high-cardinality label %q", name)
		}
	}
}

func TestLargeRunsGiveEachTaskItsOwnTrace(t *testing.T) {
	t.Parallel()
	tel, rec := telemetrytest.New(t, telemetry.Config{TraceLinkThreshold: 4})
	addr, db := testenv.RedisDB(t)
	b := setupOn(t, addr, db, &scripted{}, nil, options{tel: tel})
	st, _ := b.run(loadSpec(t, twoByTwoByTwo("")))
	if st.Succeeded != 8 {
		t.Fatalf("%d succeeded; want 8", st.Succeeded)
	}
	spans := rec.Ended()
	root := byName(spans, telemetry.SpanSubmit)[0]
	traces := map[trace.TraceID]bool{}
	for _, a := range byName(spans, "process image:generate") {
		traces[a.SpanContext().TraceID()] = true
		linked := false
		for _, l := range a.Links() {
			if l.SpanContext.SpanID() == root.SpanContext().SpanID() {
				linked = true
			}
		}
		if !linked {
			t.Errorf("a task span of a large run has no link to the run root")
		}
	}
	if len(traces) != 8 || traces[root.SpanContext().TraceID()] {
		t.Errorf("%d task traces (root's among them: %v); want 8 of their own", len(traces), traces[root.SpanContext().TraceID()])
	}
	fin := byName(spans, "process run:finalize")
	if len(fin) != 1 || fin[0].SpanContext().TraceID() != root.SpanContext().TraceID() {
		t.Error("finalize is not in the run's trace")
	}
}
