package sim

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// twoModels is a limited model beside an unlimited one, as two providers
// with different limits served by one server.
func twoModels(limited ModelBehavior) map[string]ModelBehavior {
	return map[string]ModelBehavior{
		"acme/limited": limited,
		"acme/free":    {Profile: "seededit"},
	}
}

func TestServerModelRateLimit(t *testing.T) {
	t.Parallel()
	clock := newSrvClock()
	e := newSrvEnv(t, ServerConfig{
		Models:     twoModels(ModelBehavior{Profile: "kontext", RateLimit: 3}),
		RateWindow: time.Minute, OutputSize: 64, Now: clock.Now,
	})
	in := e.input()
	var codes []int
	for range 5 {
		r := e.create("acme/limited", in)
		codes = append(codes, r.code)
		if r.code == http.StatusTooManyRequests {
			var body map[string]any
			r.decode(t, &body)
			want := map[string]any{"detail": "Request was throttled. Your rate limit resets in ~60s.", "status": 429.0, "retry_after": 60.0}
			if diff := cmp.Diff(want, body); diff != "" {
				t.Errorf("429 body (-want +got):\n%s", diff)
			}
			if r.header.Get("X-Sim-Throttle") != "model-rate" || r.header.Get("Retry-After") != "60" {
				t.Errorf("429 headers %v", r.header)
			}
		}
	}
	if want := []int{201, 201, 201, 429, 429}; !cmp.Equal(codes, want) {
		t.Errorf("limited model answered %v, want %v", codes, want)
	}
	for i := range 5 {
		if r := e.create("acme/free", in); r.code != http.StatusCreated {
			t.Errorf("unlimited model, create %d: %d %s", i, r.code, r.body)
		}
	}
	clock.Add(time.Minute)
	if r := e.create("acme/limited", in); r.code != http.StatusCreated {
		t.Errorf("a window later: %d %s", r.code, r.body)
	}

	st := e.srv.Stats()
	lim, free := st.Models["acme/limited"], st.Models["acme/free"]
	got := [...]int64{lim.Creates, lim.Accepted, lim.Created, lim.Throttled, lim.ThrottledRate, free.Creates, free.Accepted, free.Throttled, st.Throttled}
	if want := [...]int64{6, 4, 4, 2, 2, 5, 5, 0, 2}; got != want {
		t.Errorf("limited creates/accepted/created/throttled/rate 429s, free creates/accepted/throttled, server throttled = %v, want %v", got, want)
	}
	if n := lim.MaxInWindow(time.Minute); n != 3 {
		t.Errorf("limited MaxInWindow(1m) = %d, want 3", n)
	}
	if n := lim.OverLimitWindows(time.Minute, 3); n != 0 {
		t.Errorf("limited OverLimitWindows(1m, 3) = %d, want 0", n)
	}
	if n := lim.OverLimitWindows(2*time.Minute, 3); n != 1 {
		t.Errorf("limited OverLimitWindows(2m, 3) = %d, want 1", n)
	}
	if n := free.MaxInWindow(time.Minute); n != 5 {
		t.Errorf("free MaxInWindow(1m) = %d, want 5", n)
	}
	first, last := lim.AcceptSpan()
	if want := newSrvClock().Now(); !first.Equal(want) || !last.Equal(want.Add(time.Minute)) {
		t.Errorf("AcceptSpan = %v, %v; want %v and a minute later", first, last, want)
	}
}

func TestServerModelConcurrency(t *testing.T) {
	t.Parallel()
	clock := newSrvClock()
	e := newSrvEnv(t, ServerConfig{
		Models:     twoModels(ModelBehavior{Profile: "kontext", Latency: 10 * time.Second, Concurrency: 2}),
		OutputSize: 64, Now: clock.Now,
	})
	in := e.input()
	first := e.create("acme/limited", in).prediction(t)
	clock.Add(2 * time.Second)
	if r := e.create("acme/limited", in); r.code != http.StatusCreated {
		t.Fatalf("second create: %d %s", r.code, r.body)
	}
	r := e.create("acme/limited", in)
	var body struct {
		RetryAfter int `json:"retry_after"`
	}
	r.decode(t, &body)
	if r.code != http.StatusTooManyRequests || r.header.Get("X-Sim-Throttle") != "model-concurrency" || body.RetryAfter != 8 {
		t.Errorf("third create: %d %q retry_after %d; want 429 model-concurrency after 8", r.code, r.header.Get("X-Sim-Throttle"), body.RetryAfter)
	}
	if r := e.create("acme/free", in); r.code != http.StatusCreated {
		t.Errorf("the other model is not capped: %d %s", r.code, r.body)
	}
	// Cancelling frees the model's slot at once.
	if c := e.do("POST", "/v1/predictions/"+first.ID+"/cancel", nil); c.code != http.StatusOK {
		t.Fatalf("cancel: %d %s", c.code, c.body)
	}
	clock.Add(time.Second)
	if r := e.create("acme/limited", in); r.code != http.StatusCreated { // ends at 13s
		t.Errorf("after a cancel: %d %s", r.code, r.body)
	}
	clock.Add(9 * time.Second) // the one from 2s finishes
	if got := e.srv.Stats().Models["acme/limited"].InFlight; got != 1 {
		t.Errorf("at 12s the limited model has %d in flight, want 1", got)
	}
	if r := e.create("acme/limited", in); r.code != http.StatusCreated {
		t.Errorf("after one finished: %d %s", r.code, r.body)
	}

	st := e.srv.Stats()
	m := st.Models["acme/limited"]
	got := [...]int64{m.Creates, m.Accepted, m.Created, m.Throttled, m.ThrottledConcurrency, int64(m.MaxInFlight), int64(m.InFlight), st.ThrottledConcurrency}
	if want := [...]int64{5, 4, 4, 1, 1, 2, 2, 1}; got != want {
		t.Errorf("creates, accepted, created, throttled, concurrency 429s, max in flight, in flight, server concurrency 429s = %v, want %v", got, want)
	}
	if st.MaxInFlight != 2 || st.Models["acme/free"].Created != 1 {
		t.Errorf("server MaxInFlight = %d, free model created %d; want 2 and 1", st.MaxInFlight, st.Models["acme/free"].Created)
	}

	e.srv.Reset()
	m = e.srv.Stats().Models["acme/limited"]
	if m.Creates != 0 || m.InFlight != 2 || m.MaxInFlight != 2 || m.AcceptLog() != 0 {
		t.Errorf("after Reset: %+v, accept log %d; want zero counters, 2 in flight", m, m.AcceptLog())
	}
}

func TestServerThrottleRate(t *testing.T) {
	t.Parallel()
	const n, rate = 2000, 0.1
	e := newSrvEnv(t, ServerConfig{
		Models: twoModels(ModelBehavior{Profile: "kontext", ThrottleRate: rate}),
		Seed:   7, OutputSize: 64,
	})
	in := e.input()
	throttled := 0
	for range n {
		r := e.create("acme/limited", in)
		switch r.code {
		case http.StatusCreated:
		case http.StatusTooManyRequests:
			throttled++
			var body map[string]any
			r.decode(t, &body)
			want := map[string]any{"detail": "Request was throttled. Your rate limit resets in ~1s.", "status": 429.0, "retry_after": 1.0}
			if diff := cmp.Diff(want, body); diff != "" {
				t.Fatalf("429 body (-want +got):\n%s", diff)
			}
			if r.header.Get("X-Sim-Throttle") != "random" || r.header.Get("Retry-After") != "1" {
				t.Fatalf("429 headers %v", r.header)
			}
		default:
			t.Fatalf("create: %d %s", r.code, r.body)
		}
	}
	if want, sd := rate*n, math.Sqrt(n*rate*(1-rate)); math.Abs(float64(throttled)-want) > 5*sd {
		t.Errorf("%d of %d creates throttled, want %.0f ± %.0f", throttled, n, want, 5*sd)
	}
	st := e.srv.Stats()
	m := st.Models["acme/limited"]
	if m.Throttled != int64(throttled) || m.ThrottledRandom != int64(throttled) || st.ThrottledRandom != int64(throttled) || st.Throttled != int64(throttled) {
		t.Errorf("throttled counters: model %d/%d, server %d/%d; want all %d", m.Throttled, m.ThrottledRandom, st.Throttled, st.ThrottledRandom, throttled)
	}
	if m.Accepted != n-int64(throttled) || m.AcceptLog() != int(m.Accepted) || st.MaxInWindow(time.Hour) != int(m.Accepted) {
		t.Errorf("accepted %d, accept log %d, server window %d; want %d: random 429s are not accepted", m.Accepted, m.AcceptLog(), st.MaxInWindow(time.Hour), n-throttled)
	}
	for range 50 {
		if r := e.create("acme/free", in); r.code != http.StatusCreated {
			t.Fatalf("a model without throttle_rate: %d %s", r.code, r.body)
		}
	}
}

// TestServerThrottleRateKeepsFates checks that random throttling draws from
// a stream of its own: the accepted creates meet the same fates as without it.
func TestServerThrottleRateKeepsFates(t *testing.T) {
	t.Parallel()
	run := func(throttle float64) []int {
		e := newSrvEnv(t, ServerConfig{
			Models: oneModel("acme/flaky", ModelBehavior{Profile: "kontext", ServerErrorRate: 0.3, ThrottleRate: throttle}),
			Seed:   3, OutputSize: 64,
		})
		var codes []int
		for len(codes) < 100 {
			if r := e.create("acme/flaky", e.input()); r.code != http.StatusTooManyRequests {
				codes = append(codes, r.code)
			}
		}
		return codes
	}
	if diff := cmp.Diff(run(0), run(0.2)); diff != "" {
		t.Errorf("accepted creates met other fates with throttle_rate set (-without +with):\n%s", diff)
	}
}

func TestServerStatsEndpointModels(t *testing.T) {
	t.Parallel()
	e := newSrvEnv(t, ServerConfig{
		Models:     twoModels(ModelBehavior{Profile: "kontext", RateLimit: 2, Concurrency: 5, ThrottleRate: 0, Latency: time.Minute}),
		OutputSize: 64,
	})
	for range 3 {
		e.create("acme/limited", e.input())
	}
	e.create("acme/free", e.input())
	r := e.do("GET", "/stats?window=10s&limit=0", nil)
	var got struct {
		Models map[string]struct {
			Creates     int64          `json:"creates"`
			Accepted    int64          `json:"accepted"`
			Throttled   int64          `json:"throttled"`
			InFlight    int            `json:"in_flight"`
			MaxInFlight int            `json:"max_in_flight"`
			RateLimit   int            `json:"rate_limit"`
			Concurrency int            `json:"concurrency"`
			FirstAccept *time.Time     `json:"first_accept"`
			LastAccept  *time.Time     `json:"last_accept"`
			MaxInWindow map[string]int `json:"max_in_window"`
			OverLimit   *struct {
				Limit   int `json:"limit"`
				Windows int `json:"windows"`
			} `json:"over_limit"`
		} `json:"models"`
	}
	r.decode(t, &got)
	lim, ok := got.Models["acme/limited"]
	if r.code != http.StatusOK || !ok || lim.Creates != 3 || lim.Accepted != 2 || lim.Throttled != 1 || lim.InFlight != 2 ||
		lim.MaxInFlight != 2 || lim.RateLimit != 2 || lim.Concurrency != 5 || lim.MaxInWindow["10s"] != 2 {
		t.Errorf("stats models: %d %s", r.code, r.body)
	}
	if lim.FirstAccept == nil || lim.LastAccept == nil || lim.LastAccept.Before(*lim.FirstAccept) {
		t.Errorf("accept span %v..%v", lim.FirstAccept, lim.LastAccept)
	}
	if lim.OverLimit == nil || lim.OverLimit.Limit != 2 || lim.OverLimit.Windows != 0 {
		t.Errorf("limited over_limit = %+v, want 0 windows over its own limit 2", lim.OverLimit)
	}
	if free := got.Models["acme/free"]; free.Creates != 1 || free.OverLimit != nil {
		t.Errorf("free model: %+v; want 1 create and no limit", free)
	}
}

func TestParseModels(t *testing.T) {
	t.Parallel()
	defaults := DefaultModels()
	kontext := defaults["black-forest-labs/flux-kontext-pro"]
	tests := []struct {
		name    string
		file    string
		want    map[string]ModelBehavior
		wantErr string
	}{
		{
			name: "registry model keeps its defaults",
			file: "models:\n  black-forest-labs/flux-kontext-pro:\n    latency: 800ms\n    rate_limit: 300\n    concurrency: 6\n    throttle_rate: 0.03\n    server_error_rate: 0.05\n    blank_rate: 0.02\n",
			want: map[string]ModelBehavior{"black-forest-labs/flux-kontext-pro": func() ModelBehavior {
				b := kontext
				b.Latency, b.RateLimit, b.Concurrency, b.ThrottleRate, b.ServerErrorRate, b.BlankRate = 800*time.Millisecond, 300, 6, 0.03, 0.05, 0.02
				return b
			}()},
		},
		{
			name: "JSON with a new model",
			file: `{"models": {"acme/poster": {"profile": "ideogram", "latency": "2s", "latency_jitter": 0.1, "aspect_ratio": "3:4"}}}`,
			want: map[string]ModelBehavior{"acme/poster": {Profile: "ideogram", Latency: 2 * time.Second, LatencyJitter: 0.1, AspectRatio: "3:4"}},
		},
		{name: "new model needs a profile", file: "models:\n  acme/x: {latency: 1s}\n", wantErr: "profile is required"},
		{name: "unknown field", file: "models:\n  acme/x: {profile: kontext, rate: 3}\n", wantErr: "field rate not found"},
		{name: "bad latency", file: "models:\n  acme/x: {profile: kontext, latency: fast}\n", wantErr: "not a duration"},
		{name: "bad rate", file: "models:\n  acme/x: {profile: kontext, throttle_rate: 2}\n", wantErr: "throttle rate 2 is outside"},
		{name: "negative limit", file: "models:\n  acme/x: {profile: kontext, rate_limit: -1}\n", wantErr: "negative rate limit"},
		{name: "empty", file: "", wantErr: "no models"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseModels([]byte(tt.file))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseModels error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseModels (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("include defaults", func(t *testing.T) {
		t.Parallel()
		got, err := ParseModels([]byte("include_defaults: true\nmodels:\n  black-forest-labs/flux-kontext-pro: {rate_limit: 10}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(defaults) || got["black-forest-labs/flux-kontext-pro"].RateLimit != 10 {
			t.Errorf("got %d models (want %d), kontext rate limit %d (want 10)", len(got), len(defaults), got["black-forest-labs/flux-kontext-pro"].RateLimit)
		}
	})
}
