package sim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// During an outage every provider request is answered 503 and nothing is
// created or counted against a limit; predictions already running go on
// and are found finished once it ends.
func TestServerOutage(t *testing.T) {
	t.Parallel()
	clock := newSrvClock()
	e := newSrvEnv(t, ServerConfig{
		Models:    oneModel("acme/edit", ModelBehavior{Profile: "kontext", Latency: 2 * time.Second}),
		RateLimit: 100, OutputSize: 64, Now: clock.Now,
	})
	before := e.create("acme/edit", e.input()).prediction(t)
	admin := func(method, query string) (int, outageJSON) {
		t.Helper()
		req, err := http.NewRequest(method, e.http.URL+"/admin/outage"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := e.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var o outageJSON
		_ = json.NewDecoder(resp.Body).Decode(&o)
		return resp.StatusCode, o
	}
	if code, o := admin("POST", "?for=30s"); code != http.StatusOK || !o.Active || o.Until.Sub(*o.From) != 30*time.Second {
		t.Fatalf("start outage: %d %+v", code, o)
	}
	clock.Add(5 * time.Second)

	for _, tc := range []struct{ method, path string }{
		{"POST", "/v1/models/acme/edit/predictions"},
		{"POST", "/v1/predictions"},
		{"GET", "/v1/predictions/" + before.ID},
		{"GET", "/v1/predictions"},
		{"POST", "/v1/predictions/" + before.ID + "/cancel"},
		{"POST", "/v1/files"},
		{"GET", "/files/outputs/" + before.ID + ".png"},
	} {
		var body any
		if tc.method == "POST" {
			body = map[string]any{"version": "acme/edit", "input": e.input()}
		}
		r := e.do(tc.method, tc.path, body)
		var p problem
		r.decode(t, &p)
		if r.code != http.StatusServiceUnavailable || p.Status != 503 || !strings.Contains(p.Detail, "unavailable") {
			t.Errorf("%s %s during the outage: %d %s; want 503", tc.method, tc.path, r.code, r.body)
		}
	}
	// The stats and the admin endpoint keep answering.
	st := e.srv.Stats()
	if st.OutageRefused != 7 || st.OutageCreates != 2 || st.Creates != 1 || st.Created != 1 || st.Polls != 0 || st.Cancels != 0 {
		t.Errorf("stats during the outage: refused %d (creates %d), creates %d, created %d, polls %d, cancels %d; want 7 (2), 1, 1, 0, 0",
			st.OutageRefused, st.OutageCreates, st.Creates, st.Created, st.Polls, st.Cancels)
	}
	if code, o := admin("GET", ""); code != http.StatusOK || !o.Active {
		t.Errorf("GET /admin/outage: %d %+v", code, o)
	}

	clock.Add(25 * time.Second) // the outage ends at 30 s
	if code, o := admin("GET", ""); code != http.StatusOK || o.Active {
		t.Errorf("after the window: %d %+v; want inactive", code, o)
	}
	if p := e.get(before.ID); p.Status != "succeeded" {
		t.Errorf("prediction created before the outage: %s, want succeeded", p.Status)
	}
	if r := e.create("acme/edit", e.input()); r.code != http.StatusCreated {
		t.Errorf("create after the outage: %d %s", r.code, r.body)
	}

	// for=0 ends an outage early; a bad duration is refused.
	admin("POST", "?for=1h")
	if r := e.create("acme/edit", e.input()); r.code != http.StatusServiceUnavailable {
		t.Errorf("create in a second outage: %d", r.code)
	}
	if code, o := admin("POST", "?for=0"); code != http.StatusOK || o.Active {
		t.Errorf("for=0: %d %+v", code, o)
	}
	if r := e.create("acme/edit", e.input()); r.code != http.StatusCreated {
		t.Errorf("create after for=0: %d %s", r.code, r.body)
	}
	if code, _ := admin("POST", "?for=soon"); code != http.StatusBadRequest {
		t.Errorf("for=soon: %d, want 400", code)
	}
	var stats struct {
		Paid   int64      `json:"paid_predictions"`
		Outage outageJSON `json:"outage"`
	}
	r := e.do("GET", "/stats", nil)
	r.decode(t, &stats)
	if stats.Paid != 3 || stats.Outage.Active {
		t.Errorf("GET /stats: paid_predictions %d, outage %+v; want 3 and none", stats.Paid, stats.Outage)
	}
}
