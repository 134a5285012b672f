package providertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// Fake is a local server speaking one provider's protocol.
type Fake interface {
	// URL is the base URL to point the adapter at.
	URL() string
	// Script queues scenarios for the next generation requests; with the
	// queue empty, requests succeed.
	Script(...Scenario)
	// Supports reports whether the provider has this failure mode at all
	// (OpenAI's inline outputs cannot expire, for example).
	Supports(Scenario) bool
	// Calls counts generation requests received.
	Calls() int
	// Requests returns every HTTP request received.
	Requests() []Request
}

// Resumable is implemented by the fakes of asynchronous providers, whose
// adapters resume a request an earlier delivery created (Request.Resume)
// instead of paying for a new one.
type Resumable interface {
	Fake
	// Expire makes the request with this id unusable the way the provider's
	// retention does (output removed, or the request forgotten), so that
	// resuming it must report provider.ErrGone.
	Expire(id string)
}

// Harness tells the suite how to build an adapter and its fake.
type Harness struct {
	// NewFake starts the provider's fake for one subtest.
	NewFake func(t *testing.T) Fake
	// NewGenerator returns the adapter configured with Key and pointed at
	// baseURL, with fast polling suitable for tests.
	NewGenerator func(t *testing.T, baseURL string) provider.Generator
	// Model is the model name to request (no provider prefix).
	Model string
	// Params are the request params.
	Params map[string]any
	// Key is the secret the adapter was configured with. The suite checks it
	// never appears in a result, an error, or a request body.
	Key string
	// Provider is the adapter's provider name, expected in its errors.
	Provider string
	// FetchesURLs says the provider takes input images by URL, so the
	// adapter passes on a URL that is all it has and the fake refuses one
	// it could not fetch (Base.Unfetchable). False for providers that take
	// only uploaded bytes (OpenAI edits, Ideogram).
	FetchesURLs bool
}

func (h Harness) request() provider.Request {
	ref := Reference()
	return provider.Request{
		Model: h.Model, Prompt: "she is playing the piano", Character: "mara",
		Reference: provider.Image{Data: ref, ContentType: http.DetectContentType(ref)},
		Seed:      1234, Params: h.Params,
	}
}

// want is the expected outcome of a scenario.
var want = map[Scenario]provider.Class{
	RateLimited:   provider.Rate,
	ServerError:   provider.Transient,
	Moderated:     provider.Safety,
	Billing:       provider.Billing,
	Unauthorized:  provider.Billing,
	BadInput:      provider.Input,
	Malformed:     provider.Transient,
	OutputExpired: provider.Transient,
	TaskFailed:    provider.Transient,
}

// Run is the conformance suite. Every adapter passes it against its fake:
// each scenario classified as shared/providers.md says; one Generate, one
// provider attempt; the Resume/OnPending contract (resumed without a second
// create for asynchronous providers, ignored by synchronous ones); and
// reference URLs (a private bucket URL is never sent when the bytes are at
// hand, and one that is all there is gets the provider's input error).
func Run(t *testing.T, h Harness) {
	t.Helper()
	for _, sc := range AllScenarios {
		t.Run(string(sc), func(t *testing.T) {
			t.Parallel()
			fake := h.NewFake(t)
			if !fake.Supports(sc) {
				t.Skipf("%s has no %s failure mode", h.Provider, sc)
			}
			gen := h.NewGenerator(t, fake.URL())
			fake.Script(sc)
			timeout := 30 * time.Second
			if sc == Slow {
				timeout = 500 * time.Millisecond
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			began := time.Now()
			res, err := gen.Generate(ctx, h.request())
			took := time.Since(began)
			checkNoKey(t, h.Key, res, err, fake.Requests())
			switch sc {
			case OK:
				checkOK(t, res, err)
			case Slow:
				if err == nil {
					t.Fatal("a request the provider never answered succeeded")
				}
				if took > 3*time.Second {
					t.Errorf("returned %s after the deadline; want promptly", took-timeout)
				}
			default:
				checkClass(t, h.Provider, sc, err)
			}
		})
	}
	t.Run("retry_after_success", func(t *testing.T) {
		t.Parallel()
		// The queue owns retries: one Generate call is one provider
		// attempt, and a failed one is not retried inside the adapter.
		fake := h.NewFake(t)
		gen := h.NewGenerator(t, fake.URL())
		fake.Script(ServerError)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := gen.Generate(ctx, h.request()); err == nil {
			t.Fatal("the adapter retried a 5xx on its own; the queue owns retries")
		}
		if n := fake.Calls(); n != 1 {
			t.Errorf("one Generate made %d generation requests; want 1", n)
		}
		res, err := gen.Generate(ctx, h.request())
		checkOK(t, res, err)
	})
	runResume(t, h)
	runReferenceURLs(t, h)
}

// PrivateBucketURLs are presigned URLs into buckets no hosted provider can
// reach: the local MinIO and compose's.
var PrivateBucketURLs = []string{
	"https://127.0.0.1:9000/likeness/refs/mara/3f2a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0d1e",
	"https://minio:9000/likeness/refs/mara/3f2a.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=0d1e",
}

// runReferenceURLs checks what an adapter does with a reference URL no
// hosted provider could fetch. With the bytes at hand it must send the
// bytes and never the URL (which would also hand a live bucket URL to a
// third party). With the URL alone, an adapter whose provider fetches URLs
// sends it, and the provider (here, its fake) refuses it as an input error.
func runReferenceURLs(t *testing.T, h Harness) {
	t.Helper()
	for i, u := range PrivateBucketURLs {
		host := u[len("https://"):strings.Index(u, "/likeness")]
		t.Run(fmt.Sprintf("private_reference_url_%d", i), func(t *testing.T) {
			t.Parallel()
			fake := h.NewFake(t)
			gen := h.NewGenerator(t, fake.URL())
			req := h.request()
			req.Reference.URL = u
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := gen.Generate(ctx, req)
			checkOK(t, res, err)
			for _, r := range fake.Requests() {
				if strings.Contains(string(r.Body), host) || strings.Contains(r.Path, host) {
					t.Errorf("request %s %s carries the private bucket URL %s; want the image bytes instead", r.Method, r.Path, u)
				}
			}
		})
		if !h.FetchesURLs {
			continue
		}
		t.Run(fmt.Sprintf("unfetchable_reference_url_%d", i), func(t *testing.T) {
			t.Parallel()
			fake := h.NewFake(t)
			gen := h.NewGenerator(t, fake.URL())
			req := h.request()
			req.Reference = provider.Image{URL: u}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := gen.Generate(ctx, req)
			var pe *provider.Error
			if !errors.As(err, &pe) || pe.Class != provider.Input {
				t.Fatalf("error %v; want the provider's input error for a URL it cannot fetch", err)
			}
			if strings.Contains(pe.Message, "fake:") {
				t.Fatalf("the fake rejected the request as malformed: %v", err)
			}
			sent := false
			for _, r := range fake.Requests() {
				sent = sent || strings.Contains(string(r.Body), host)
			}
			if !sent {
				t.Errorf("the URL never reached the provider; the refusal %v came from the adapter, not the provider", err)
			}
		})
	}
}

// runResume checks the Resume/OnPending contract (provider.Request). For an
// asynchronous provider (its fake is Resumable): the request is reported
// once, before any wait; a worker that dies while waiting is redelivered
// with it and gets the output without a second create; a resumed request
// the provider no longer has is provider.ErrGone. A synchronous adapter
// never reports a request and ignores Resume.
func runResume(t *testing.T, h Harness) {
	t.Helper()
	ctxFor := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	noPending := func(t *testing.T) func(provider.Pending) {
		return func(p provider.Pending) { t.Errorf("OnPending(%+v) called; want it never called here", p) }
	}
	if _, ok := h.NewFake(t).(Resumable); !ok {
		t.Run("synchronous", func(t *testing.T) {
			t.Parallel()
			fake := h.NewFake(t)
			gen := h.NewGenerator(t, fake.URL())
			req := h.request()
			req.OnPending = noPending(t)
			req.Resume = &provider.Pending{Provider: h.Provider, ID: "earlier-request", CreatedAt: time.Now()}
			res, err := gen.Generate(ctxFor(t), req)
			checkOK(t, res, err)
			if n := fake.Calls(); n != 1 {
				t.Errorf("%d generation requests; a synchronous adapter ignores Resume and makes one", n)
			}
		})
		return
	}
	// record returns an OnPending that keeps what the adapter reported as
	// the worker would (through JSON, as it goes to Redis), and then calls
	// then, if set.
	record := func(t *testing.T, got *[]provider.Pending, then func()) func(provider.Pending) {
		return func(p provider.Pending) {
			b, err := json.Marshal(p)
			if err != nil {
				t.Errorf("Pending does not encode: %v", err)
			}
			var back provider.Pending
			if err := json.Unmarshal(b, &back); err != nil {
				t.Errorf("Pending does not decode: %v", err)
			}
			*got = append(*got, back)
			if then != nil {
				then()
			}
		}
	}
	checkPending := func(t *testing.T, got []provider.Pending) provider.Pending {
		t.Helper()
		if len(got) != 1 {
			t.Fatalf("OnPending called %d times; want once per created request", len(got))
		}
		p := got[0]
		if p.Provider != h.Provider || p.ID == "" || p.CreatedAt.IsZero() {
			t.Errorf("OnPending reported %+v; want provider %q, an id and when it was created", p, h.Provider)
		}
		return p
	}
	t.Run("resume_after_crash", func(t *testing.T) {
		t.Parallel()
		fake := h.NewFake(t)
		gen := h.NewGenerator(t, fake.URL())
		// The worker dies as soon as the request is recorded: its ctx ends
		// before the adapter has waited for or downloaded anything.
		ctx, die := context.WithCancel(ctxFor(t))
		var got []provider.Pending
		req := h.request()
		req.OnPending = record(t, &got, die)
		if _, err := gen.Generate(ctx, req); err == nil {
			t.Fatal("Generate succeeded after its ctx ended")
		}
		p := checkPending(t, got)
		req = h.request()
		req.Resume = &p
		req.OnPending = noPending(t)
		res, err := gen.Generate(ctxFor(t), req)
		checkOK(t, res, err)
		if res != nil && res.RequestID != p.ID {
			t.Errorf("resumed result is request %q; want %q", res.RequestID, p.ID)
		}
		if n := fake.Calls(); n != 1 {
			t.Errorf("%d generation requests for one task; the redelivery must resume the first, not pay again", n)
		}
		checkNoKey(t, h.Key, res, err, fake.Requests())
	})
	t.Run("resume_finished", func(t *testing.T) {
		t.Parallel()
		// Finished, then the worker died before storing the output: the
		// redelivery downloads it again.
		fake := h.NewFake(t)
		gen := h.NewGenerator(t, fake.URL())
		var got []provider.Pending
		req := h.request()
		req.OnPending = record(t, &got, nil)
		res, err := gen.Generate(ctxFor(t), req)
		checkOK(t, res, err)
		p := checkPending(t, got)
		req = h.request()
		req.Resume = &p
		res, err = gen.Generate(ctxFor(t), req)
		checkOK(t, res, err)
		if n := fake.Calls(); n != 1 {
			t.Errorf("%d generation requests; want 1", n)
		}
	})
	checkGone := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, provider.ErrGone) {
			t.Fatalf("error %v; want one matching provider.ErrGone", err)
		}
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Provider != h.Provider {
			t.Errorf("error %v is not a *provider.Error of %s", err, h.Provider)
		}
		if c := provider.ClassOf(err); c != provider.Transient {
			t.Errorf("ErrGone classed %q; want transient, so a caller that ignores ErrGone still retries", c)
		}
	}
	t.Run("resume_unknown", func(t *testing.T) {
		t.Parallel()
		fake := h.NewFake(t)
		gen := h.NewGenerator(t, fake.URL())
		req := h.request()
		req.Resume = &provider.Pending{Provider: h.Provider, ID: "0f9e8d7c-unknown-request", CreatedAt: time.Now().Add(-time.Hour)}
		req.OnPending = noPending(t)
		_, err := gen.Generate(ctxFor(t), req)
		checkGone(t, err)
		if n := fake.Calls(); n != 0 {
			t.Errorf("%d generation requests; resuming must never create", n)
		}
	})
	t.Run("resume_expired", func(t *testing.T) {
		t.Parallel()
		fake := h.NewFake(t)
		gen := h.NewGenerator(t, fake.URL())
		var got []provider.Pending
		req := h.request()
		req.OnPending = record(t, &got, nil)
		res, err := gen.Generate(ctxFor(t), req)
		checkOK(t, res, err)
		p := checkPending(t, got)
		fake.(Resumable).Expire(p.ID)
		req = h.request()
		req.Resume = &p
		_, err = gen.Generate(ctxFor(t), req)
		checkGone(t, err)
		if n := fake.Calls(); n != 1 {
			t.Errorf("%d generation requests; want 1", n)
		}
	})
}

func checkOK(t *testing.T, res *provider.Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if w, hgt, derr := DecodeSize(res.Image.Data); derr != nil || w == 0 || hgt == 0 {
		t.Errorf("output is not an image: %v", derr)
	}
	if !strings.HasPrefix(res.Image.ContentType, "image/") {
		t.Errorf("content type %q; want it sniffed from the bytes", res.Image.ContentType)
	}
	if res.RequestID == "" {
		t.Error("no provider request id")
	}
	if res.CostUSD <= 0 {
		t.Errorf("cost %v; want the list price", res.CostUSD)
	}
}

func checkClass(t *testing.T, prov string, sc Scenario, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: Generate succeeded", sc)
	}
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("%s: error %T %v is not a *provider.Error", sc, err, err)
	}
	if strings.Contains(pe.Message, "fake:") {
		t.Fatalf("%s: the fake rejected the request as malformed: %v", sc, err)
	}
	if pe.Class != want[sc] {
		t.Errorf("%s: class %q; want %q (%v)", sc, pe.Class, want[sc], err)
	}
	if pe.Provider != prov {
		t.Errorf("%s: provider %q; want %q", sc, pe.Provider, prov)
	}
	if sc == RateLimited {
		if d := pe.RetryAfter - RateWait; d < -time.Second || d > time.Second {
			t.Errorf("rate limited: RetryAfter %s; want the provider's %s", pe.RetryAfter, RateWait)
		}
	}
	if pe.Message == "" && pe.Err == nil {
		t.Errorf("%s: no message to explain the failure", sc)
	}
}

// checkNoKey asserts the secret reaches neither the result, the error, nor
// any request URL. (Bodies may carry a user's key where the protocol says so:
// gpt-image-1 on Replicate takes the OpenAI key as an input.)
func checkNoKey(t *testing.T, key string, res *provider.Result, err error, reqs []Request) {
	t.Helper()
	if key == "" {
		return
	}
	if err != nil && strings.Contains(err.Error(), key) {
		t.Errorf("the error message contains the API key: %v", err)
	}
	if res != nil && (strings.Contains(res.Logs, key) || strings.Contains(res.RevisedPrompt, key)) {
		t.Error("the result contains the API key")
	}
	for _, r := range reqs {
		if strings.Contains(r.Path, key) {
			t.Errorf("request %s %s carries the key in its URL", r.Method, r.Path)
		}
	}
}
