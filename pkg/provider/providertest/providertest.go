// Package providertest holds what proves a provider adapter: local servers
// that speak each provider's HTTP protocol (its async lifecycle and its
// failure modes, scripted per request), and one conformance suite every
// adapter must pass against its server.
//
// Providers cannot be reached from tests, so the fakes reproduce what
// shared/providers.md and the official SDKs say the provider does: auth
// headers, paths, content types, status codes and response bodies. Each fake
// also checks what the client sends and fails the request (HTTP 400 with a
// "fake:" message) when the client gets the protocol wrong.
//
// Fakes whose provider fetches input images by URL refuse one no hosted
// provider could fetch (Base.Unfetchable: loopback, private, link-local or
// local-name hosts other than the fake's own) with the provider's own input
// error, so tests catch a private bucket URL sent to a provider. Fakes of
// asynchronous providers count creates (Calls), keep requests by id so a
// resumed Generate finds them, and can expire one (Resumable.Expire).
package providertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// Scenario names one way a provider can answer a generation request.
type Scenario string

// Scenarios every fake supports unless its Supports method says otherwise.
const (
	// OK answers with a good image, through the provider's usual path
	// (async polling where the provider is async).
	OK Scenario = "ok"
	// RateLimited answers 429 asking the client to wait RateWait.
	RateLimited Scenario = "rate_limited"
	// ServerError answers 5xx.
	ServerError Scenario = "server_error"
	// Moderated rejects the prompt or output as unsafe.
	Moderated Scenario = "moderated"
	// Billing answers that the account is out of credit or quota.
	Billing Scenario = "billing"
	// Unauthorized answers that the key is wrong (a config problem, classed
	// with Billing: retrying cannot help).
	Unauthorized Scenario = "unauthorized"
	// BadInput answers that the request is invalid.
	BadInput Scenario = "bad_input"
	// Malformed answers 200 with a body that is not the expected JSON.
	Malformed Scenario = "malformed"
	// Slow never answers until the client gives up.
	Slow Scenario = "slow"
	// OutputExpired reports success, but the output URL answers 404.
	OutputExpired Scenario = "output_expired"
	// TaskFailed makes an async task end failed with a transient error.
	TaskFailed Scenario = "task_failed"
)

// AllScenarios lists every scenario, in the order the suite runs them.
var AllScenarios = []Scenario{OK, RateLimited, ServerError, Moderated, Billing, Unauthorized, BadInput, Malformed, Slow, OutputExpired, TaskFailed}

// RateWait is the wait every fake asks for when rate limiting.
const RateWait = 7 * time.Second

// Request is what a fake recorded of one HTTP request.
type Request struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// Base is the shared machinery of a fake: a loopback server, the scenario
// queue, the record of requests, and hosting for output images with expiry.
// A provider's fake embeds *Base and registers its routes on Mux.
type Base struct {
	// Mux routes the provider's paths. Register before the first request.
	Mux *http.ServeMux
	srv *httptest.Server

	mu       sync.Mutex
	script   []Scenario
	requests []Request
	creates  int
	files    map[string]hosted
}

type hosted struct {
	data    []byte
	expired bool
}

// NewBase starts a server on 127.0.0.1; it is closed when the test ends.
func NewBase(t testing.TB) *Base {
	t.Helper()
	b := &Base{Mux: http.NewServeMux(), files: map[string]hosted{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: b}}
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	b.Mux.HandleFunc("GET /files/{name}", b.serveFile)
	return b
}

// ServeHTTP records the request and routes it.
func (b *Base) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(r.Body)
		body = buf.Bytes()
		r.Body.Close()
		r.Body = readCloser{bytes.NewReader(body)}
	}
	b.mu.Lock()
	b.requests = append(b.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	b.mu.Unlock()
	b.Mux.ServeHTTP(w, r)
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// URL is the server's base URL.
func (b *Base) URL() string { return b.srv.URL }

// Script queues scenarios for the next generation requests.
func (b *Base) Script(s ...Scenario) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.script = append(b.script, s...)
}

// Next is called by a fake when a generation request arrives: it counts the
// request and returns the scenario to play (OK once the script is empty).
func (b *Base) Next() Scenario {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.creates++
	if len(b.script) == 0 {
		return OK
	}
	s := b.script[0]
	b.script = b.script[1:]
	return s
}

// Calls is the number of generation requests received.
func (b *Base) Calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.creates
}

// Requests returns every request received so far.
func (b *Base) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.requests...)
}

// Host stores data at a URL on the fake; expired URLs answer 404 as a
// provider's expired output link does.
func (b *Base) Host(name string, data []byte, expired bool) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.files[name] = hosted{data: data, expired: expired}
	return b.URL() + "/files/" + name
}

// ExpireFile makes a hosted URL answer 404 from now on, as an output link
// past its lifetime does.
func (b *Base) ExpireFile(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f, ok := b.files[name]; ok {
		f.expired = true
		b.files[name] = f
	}
}

func (b *Base) serveFile(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	f, ok := b.files[r.PathValue("name")]
	b.mu.Unlock()
	if !ok || f.expired {
		http.Error(w, `<?xml version="1.0"?><Error><Code>NoSuchKey</Code></Error>`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream") // clients must sniff
	_, _ = w.Write(f.data)
}

// Hold blocks a Slow request until the client goes away or the test server
// closes, then answers 504.
func Hold(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(time.Minute):
	}
	w.WriteHeader(http.StatusGatewayTimeout)
}

// ProtocolError answers a request the client got wrong. Tests see it as an
// INPUT failure whose message starts with "fake:".
func ProtocolError(w http.ResponseWriter, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, `{"error":{"message":%q,"type":"invalid_request_error"},"detail":%q}`,
		"fake: "+fmt.Sprintf(format, args...), "fake: "+fmt.Sprintf(format, args...))
}

// PNG returns a w×h non-blank PNG whose pattern depends on seed.
func PNG(w, h int, seed int64) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x*7 + int(seed)), uint8(y * 5), uint8((x + y) * 3), 255})
		}
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

// Reference is the character reference image the suite sends.
func Reference() []byte { return PNG(96, 128, 3) }

// DecodeSize returns an image's size, for fakes that check uploads.
func DecodeSize(data []byte) (int, int, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return 0, 0, errors.New("not an image")
	}
	return cfg.Width, cfg.Height, nil
}

// BearerKey returns the token of an "Authorization: Bearer <key>" header.
func BearerKey(r *http.Request) string {
	k, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return ""
	}
	return k
}

// WithTimeout is context.WithTimeout for suite helpers.
func WithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// OutputSize is the size a fake renders: 64 pixels on the long side, at the
// asked aspect ratio ("W:H"), or at the input image's when none is asked
// ("" or "match_input_image"), as image-editing models do.
func OutputSize(aspect string, input []byte) (w, h int) {
	rw, rh := 4, 3
	if a, b, ok := strings.Cut(aspect, ":"); ok {
		fmt.Sscan(a, &rw)
		fmt.Sscan(b, &rh)
	} else if iw, ih, err := DecodeSize(input); err == nil {
		rw, rh = iw, ih
	}
	if rw <= 0 || rh <= 0 {
		rw, rh = 4, 3
	}
	if rw >= rh {
		return 64, max(1, 64*rh/rw)
	}
	return max(1, 64*rw/rh), 64
}

// Unfetchable returns why a provider could not fetch raw, an input URL a
// client sent, or "" when it could: data: URIs and the fake's own URLs
// (uploads it handed out) are fetchable, as is any http(s) URL on a public
// host (provider.PublicHost). A URL on a loopback, private, link-local or
// otherwise non-public address, or on a local name such as compose's
// "minio", is not: a hosted provider cannot reach it, and a fake answers
// it as its provider answers an input it cannot download.
func (b *Base) Unfetchable(raw string) string {
	if !strings.HasPrefix(raw, "http://") && !strings.HasPrefix(raw, "https://") {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Sprintf("%.60q is not a valid URL", raw)
	}
	if u.Host == b.srv.Listener.Addr().String() {
		return ""
	}
	if !provider.PublicHost(u.Hostname()) {
		return fmt.Sprintf("could not download %s://%s/...: the host is not reachable from the internet", u.Scheme, u.Host)
	}
	return ""
}

// ClientThatDies returns an HTTP client that calls die once it has received
// the answer to n requests matching match (a poll, say), so a test can end
// a Generate's ctx at an exact point of the protocol, as a worker killed
// mid-poll would, without timing guesses.
func ClientThatDies(n int, match func(*http.Request) bool, die func()) *http.Client {
	return &http.Client{Transport: &dyingTransport{n: n, match: match, die: die}}
}

type dyingTransport struct {
	mu    sync.Mutex
	n     int
	match func(*http.Request) bool
	die   func()
}

func (d *dyingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && d.match(r) {
		d.mu.Lock()
		d.n--
		last := d.n == 0
		d.mu.Unlock()
		if last {
			d.die()
		}
	}
	return resp, err
}
