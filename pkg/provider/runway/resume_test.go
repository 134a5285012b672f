package runway_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
	"github.com/likeness-run/likeness/pkg/provider/runway"
)

func TestResumeMidPoll(t *testing.T) {
	t.Parallel()
	fake := providertest.NewRunway(t)
	ctx, die := context.WithCancel(context.Background())
	defer die()
	// The worker dies after the second poll (THROTTLED).
	poll := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/tasks/")
	}
	dying, err := runway.New(runway.Config{BaseURL: fake.URL(), APIKey: providertest.RunwayKey, PollInterval: 10 * time.Millisecond,
		HTTPClient: providertest.ClientThatDies(2, poll, die)})
	if err != nil {
		t.Fatal(err)
	}
	var got []provider.Pending
	req := request("gen4_image", nil)
	req.OnPending = func(p provider.Pending) { got = append(got, p) }
	if _, err := dying.Generate(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v; want the worker's ctx ending", err)
	}
	if len(got) != 1 || got[0].ID == "" {
		t.Fatalf("OnPending got %+v; want the task once", got)
	}
	if n := count(fake.Requests(), http.MethodDelete, "/v1/tasks/"); n != 0 {
		t.Errorf("%d DELETEs; a recorded task must be left running for the redelivery", n)
	}

	req = request("gen4_image", nil)
	req.Resume = &got[0]
	res, err := newClient(t, fake.URL()).Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequestID != got[0].ID || len(res.Image.Data) == 0 {
		t.Errorf("resumed result: request %q; want %q's output", res.RequestID, got[0].ID)
	}
	if n := fake.Calls(); n != 1 {
		t.Errorf("%d tasks submitted for one task; want 1", n)
	}
}

func TestResumeOutcomes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		sc    providertest.Scenario
		gone  bool
		class provider.Class
	}{
		// Every output URL answers 404 even after a re-fetch: gone on resume.
		{"output still expired after re-fetch", providertest.OutputExpired, true, provider.Transient},
		// Expired once: the re-fetched task's fresh URL works.
		{"output re-issued", providertest.RunwayExpiredOnce, false, ""},
		// A resumed task that failed is classified as usual.
		{"moderated", providertest.Moderated, false, provider.Safety},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, c := setup(t)
			fake.Script(tc.sc)
			var got []provider.Pending
			req := request("gen4_image", nil)
			req.OnPending = func(p provider.Pending) { got = append(got, p) }
			_, _ = c.Generate(context.Background(), req)
			if len(got) != 1 {
				t.Fatalf("OnPending called %d times; want once", len(got))
			}
			req = request("gen4_image", nil)
			req.Resume = &got[0]
			_, err := c.Generate(context.Background(), req)
			if errors.Is(err, provider.ErrGone) != tc.gone || provider.ClassOf(err) != tc.class {
				t.Errorf("resume: %v (gone %v); want gone %v, class %q", err, errors.Is(err, provider.ErrGone), tc.gone, tc.class)
			}
			if n := fake.Calls(); n != 1 {
				t.Errorf("%d submits; want 1", n)
			}
		})
	}
}
