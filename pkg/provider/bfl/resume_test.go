package bfl_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/bfl"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
)

func isPoll(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/get_result")
}

func TestResumeMidPoll(t *testing.T) {
	t.Parallel()
	fake := providertest.NewBFL(t)
	ctx, die := context.WithCancel(context.Background())
	defer die()
	// The worker dies after the first poll answered Pending.
	dying, err := bfl.New(bfl.Config{BaseURL: fake.URL(), APIKey: providertest.BFLKey, PollInterval: 10 * time.Millisecond,
		HTTPClient: providertest.ClientThatDies(1, isPoll, die)})
	if err != nil {
		t.Fatal(err)
	}
	var got []provider.Pending
	req := request("flux-kontext-pro", nil)
	req.OnPending = func(p provider.Pending) { got = append(got, p) }
	if _, err := dying.Generate(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v; want the worker's ctx ending", err)
	}
	if len(got) != 1 || !strings.HasPrefix(got[0].PollURL, fake.ClusterURL()+"/v1/get_result?id=") {
		t.Fatalf("OnPending got %+v; want one task with the cluster's polling_url", got)
	}

	req = request("flux-kontext-pro", nil)
	req.Resume = &got[0]
	res, err := newClient(t, fake.URL()).Generate(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequestID != got[0].ID || res.Seed != 1234 {
		t.Errorf("resumed result: request %q seed %d; want %q's output", res.RequestID, res.Seed, got[0].ID)
	}
	if n := fake.Calls(); n != 1 {
		t.Errorf("%d tasks submitted for one task; want 1", n)
	}
}

func TestResumeForeignPollingURL(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	var got []provider.Pending
	req := request("flux-kontext-pro", nil)
	req.OnPending = func(p provider.Pending) { got = append(got, p) }
	if _, err := c.Generate(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	// A record whose polling_url is not BFL's: the key is not sent there;
	// the adapter asks BaseURL's get_result, which (like BFL's global host
	// for a task routed to a cluster) does not know the task.
	p := got[0]
	p.PollURL = "https://bfl.example.net/v1/get_result?id=" + p.ID
	req = request("flux-kontext-pro", nil)
	req.Resume = &p
	_, err := c.Generate(context.Background(), req)
	if !errors.Is(err, provider.ErrGone) {
		t.Fatalf("error %v; want ErrGone from BaseURL's get_result", err)
	}
	last := fake.Requests()[len(fake.Requests())-1]
	if last.Method != http.MethodGet || last.Path != "/v1/get_result" {
		t.Errorf("last request %s %s; want the poll on BaseURL", last.Method, last.Path)
	}
}

func TestSubmitRefusesForeignPollingURL(t *testing.T) {
	t.Parallel()
	var polled []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"id":"t1","polling_url":"http://attacker.example.net/v1/get_result?id=t1"}`))
			return
		}
		polled = append(polled, r.URL.String())
	}))
	defer srv.Close()
	c, err := bfl.New(bfl.Config{BaseURL: srv.URL + "/v1", APIKey: providertest.BFLKey, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var pending int
	req := request("flux-kontext-pro", nil)
	req.OnPending = func(provider.Pending) { pending++ }
	_, err = c.Generate(context.Background(), req)
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Code != "malformed_response" || !strings.Contains(pe.Message, "attacker.example.net") {
		t.Fatalf("error %v; want a refusal to follow a polling_url off BFL's API", err)
	}
	srv.Close() // no handler runs after this: polled is safe to read
	if pending != 0 || len(polled) != 0 {
		t.Errorf("reported %d pending, polled %v; want neither", pending, polled)
	}
}

func TestResumeFailedTask(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	fake.Script(providertest.Moderated)
	var got []provider.Pending
	req := request("flux-kontext-pro", nil)
	req.OnPending = func(p provider.Pending) { got = append(got, p) }
	if _, err := c.Generate(context.Background(), req); provider.ClassOf(err) != provider.Safety {
		t.Fatalf("first delivery: %v; want Safety", err)
	}
	req = request("flux-kontext-pro", nil)
	req.Resume = &got[0]
	_, err := c.Generate(context.Background(), req)
	if provider.ClassOf(err) != provider.Safety || errors.Is(err, provider.ErrGone) {
		t.Errorf("resume of a moderated task: %v; want it classified as usual (Safety)", err)
	}
	if n := fake.Calls(); n != 1 {
		t.Errorf("%d submits; want 1", n)
	}
}
