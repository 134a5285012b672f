package replicate_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
	"github.com/likeness-run/likeness/pkg/provider/replicate"
)

const kontext = "black-forest-labs/flux-kontext-pro"

func isPoll(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/predictions/")
}

// recorder is an OnPending that keeps what it is told.
type recorder struct{ got []provider.Pending }

func (r *recorder) record(p provider.Pending) { r.got = append(r.got, p) }

func (r *recorder) one(t *testing.T) *provider.Pending {
	t.Helper()
	if len(r.got) != 1 {
		t.Fatalf("OnPending called %d times; want once", len(r.got))
	}
	return &r.got[0]
}

func TestResumeMidPoll(t *testing.T) {
	t.Parallel()
	fake := providertest.NewReplicate(t)
	ctx, die := context.WithCancel(ctxFor(t))
	// The worker dies after the first poll, with the prediction running.
	dying := newClient(t, fake.URL(), func(cfg *replicate.Config) {
		cfg.Wait = -1
		cfg.HTTPClient = providertest.ClientThatDies(1, isPoll, die)
	})
	var rec recorder
	req := request(kontext, nil)
	req.OnPending = rec.record
	if _, err := dying.Generate(ctx, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v; want the worker's ctx ending", err)
	}
	p := rec.one(t)
	if want := fake.URL() + "/predictions/" + p.ID; p.PollURL != want {
		t.Errorf("PollURL %q; want urls.get %q", p.PollURL, want)
	}
	if got := fake.Canceled(); len(got) != 0 {
		t.Errorf("canceled %v; a recorded prediction must be left running for the redelivery", got)
	}

	// The redelivery, in another process.
	req = request(kontext, nil)
	req.Resume = p
	res, err := newClient(t, fake.URL()).Generate(ctxFor(t), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequestID != p.ID || len(res.Image.Data) == 0 || res.CostUSD <= 0 {
		t.Errorf("resumed result: request %q, %d bytes, $%v; want %q's output at list price", res.RequestID, len(res.Image.Data), res.CostUSD, p.ID)
	}
	if n := fake.Calls(); n != 1 {
		t.Errorf("%d predictions created for one task; want 1", n)
	}
}

func TestOnPendingBeforeSyncDownload(t *testing.T) {
	t.Parallel()
	// Sync mode may return the output with the create: the prediction is
	// still reported before the download, so a crash while downloading is
	// resumed rather than paid again.
	fake, c := setup(t)
	fake.Sync(true)
	var downloadsBefore []int
	req := request(kontext, nil)
	req.OnPending = func(provider.Pending) {
		downloadsBefore = append(downloadsBefore, count(fake.Requests(), http.MethodGet, "/files/"))
	}
	if _, err := c.Generate(ctxFor(t), req); err != nil {
		t.Fatal(err)
	}
	if len(downloadsBefore) != 1 || downloadsBefore[0] != 0 {
		t.Errorf("OnPending calls saw %v downloads already made; want one call before any", downloadsBefore)
	}
}

func TestResumeIgnoresForeignPollURL(t *testing.T) {
	t.Parallel()
	fake, c := setup(t, func(cfg *replicate.Config) { cfg.Wait = -1 })
	var rec recorder
	req := request(kontext, nil)
	req.OnPending = rec.record
	if _, err := c.Generate(ctxFor(t), req); err != nil {
		t.Fatal(err)
	}
	p := rec.one(t)
	// A tampered record must not make the adapter send its token elsewhere:
	// it reads the prediction from its own API.
	p.PollURL = "https://replicate.example.net/v1/predictions/" + p.ID
	req = request(kontext, nil)
	req.Resume = p
	if _, err := c.Generate(ctxFor(t), req); err != nil {
		t.Fatalf("resume with a foreign urls.get: %v", err)
	}
	if n := count(fake.Requests(), http.MethodGet, "/predictions/"+p.ID); n < 2 {
		t.Errorf("%d reads of the prediction on the API; want the resume's too", n)
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
		// The download answered 404: on a fresh prediction that is a
		// transient failure; on a resumed one the output is gone.
		{"output download 404", providertest.OutputExpired, true, provider.Transient},
		// A resumed prediction that failed is classified as usual.
		{"moderated", providertest.Moderated, false, provider.Safety},
		{"failed", providertest.TaskFailed, false, provider.Transient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fake, c := setup(t)
			fake.Script(tc.sc)
			var rec recorder
			req := request(kontext, nil)
			req.OnPending = rec.record
			_, first := c.Generate(ctxFor(t), req)
			if first == nil || errors.Is(first, provider.ErrGone) {
				t.Fatalf("first delivery: %v; want a failure that is not ErrGone", first)
			}
			req = request(kontext, nil)
			req.Resume = rec.one(t)
			_, err := c.Generate(ctxFor(t), req)
			if errors.Is(err, provider.ErrGone) != tc.gone || provider.ClassOf(err) != tc.class {
				t.Errorf("resume: %v (gone %v); want gone %v, class %s", err, errors.Is(err, provider.ErrGone), tc.gone, tc.class)
			}
			if n := fake.Calls(); n != 1 {
				t.Errorf("%d creates; want 1", n)
			}
		})
	}
}

func TestResumeOtherProvider(t *testing.T) {
	t.Parallel()
	fake, c := setup(t)
	req := request(kontext, nil)
	req.Resume = &provider.Pending{Provider: "bfl", ID: "0b8f0001", CreatedAt: time.Now()}
	if _, err := c.Generate(ctxFor(t), req); !errors.Is(err, provider.ErrGone) {
		t.Errorf("resuming another provider's request: %v; want ErrGone (create anew)", err)
	}
	if len(fake.Requests()) != 0 {
		t.Errorf("%d requests sent; want none", len(fake.Requests()))
	}
}
