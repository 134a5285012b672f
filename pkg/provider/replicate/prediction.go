package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// Prediction statuses.
const (
	statusStarting   = "starting"
	statusProcessing = "processing"
	statusSucceeded  = "succeeded"
	statusFailed     = "failed"
	statusCanceled   = "canceled"
	statusAborted    = "aborted"
)

// codeDataRemoved is the Code of the error for a succeeded prediction whose
// output Replicate already deleted.
const codeDataRemoved = "data_removed"

// maxBody caps a JSON answer (predictions echo their inputs, data URLs
// included, and carry logs).
const maxBody = 16 << 20

// prediction is the part of Replicate's prediction object the adapter reads.
type prediction struct {
	ID          string          `json:"id"`
	Status      string          `json:"status"`
	CreatedAt   string          `json:"created_at"`
	CompletedAt *string         `json:"completed_at"`
	Output      json.RawMessage `json:"output"`
	Error       json.RawMessage `json:"error"`
	Logs        string          `json:"logs"`
	DataRemoved bool            `json:"data_removed"`
	URLs        struct {
		Get    string `json:"get"`
		Cancel string `json:"cancel"`
	} `json:"urls"`
}

// hasOutput reports whether the output is filled (not null, "", or []).
func (p *prediction) hasOutput() bool {
	switch strings.TrimSpace(string(p.Output)) {
	case "", "null", `""`, "[]":
		return false
	}
	return true
}

// run creates a prediction for model with input and waits until it ends
// (Client.Tags; Generate creates and waits in two steps).
func (c *Client) run(ctx context.Context, model string, input map[string]any, text bool) (*prediction, error) {
	p, err := c.create(ctx, model, input, true)
	if err != nil {
		return nil, err
	}
	return c.wait(ctx, p, text, false, pace{})
}

// wait polls p until it ends. For image models (text false) a present
// output ends the wait even while the status is still "processing"; text
// models wait for "succeeded", since their output may still be growing.
//
// When the wait is cut short (ctx done, polls failing), p is canceled
// unless keep is set: a prediction the caller recorded for a redelivery to
// resume (Request.OnPending, Request.Resume) is left running, since
// canceling it would throw away what was paid for; Cancel-After still
// bounds it on Replicate's side.
// expect is how long the model's predictions take (zero: unknown): the
// first poll comes when one is usually done at the earliest, later ones
// every half deviation within [minPollInterval, min(mean/4,
// PollInterval)]; unknown, every PollInterval.
func (c *Client) wait(ctx context.Context, p *prediction, text, keep bool, expect pace) (*prediction, error) {
	abandon := func(cause error) error {
		if keep {
			return &provider.Error{Class: provider.Transient, Provider: ProviderName, RequestID: p.ID,
				Message: "stopped waiting for the prediction; left it running for a redelivery to resume", Err: cause}
		}
		return c.abandon(ctx, p, cause)
	}
	fails := 0
	next, every := c.cfg.PollInterval, c.cfg.PollInterval
	if expect.mean > 0 {
		next = min(max(expect.mean-expect.dev, minPollInterval), 10*c.cfg.PollInterval)
		every = max(min(expect.dev/2, expect.mean/4, c.cfg.PollInterval), minPollInterval)
	}
	var wait time.Duration
	for {
		if done, err := c.settled(p, text); done {
			return p, err
		}
		if err := sleep(ctx, max(next, wait)); err != nil {
			return nil, abandon(err)
		}
		next = every
		got, err := c.get(ctx, p)
		if err != nil {
			if ctx.Err() != nil {
				return nil, abandon(ctx.Err())
			}
			// A failed poll does not fail the prediction: tolerate a few
			// transient ones (honouring a 429's wait) before giving up,
			// so a blip does not make the queue pay for a second run.
			if cl := provider.ClassOf(err); (cl == provider.Transient || cl == provider.Rate) && fails < maxPollErrors-1 {
				fails++
				wait = provider.RetryAfterOf(err)
				continue
			}
			if !keep {
				c.cancelPrediction(ctx, p)
				return nil, err
			}
			return nil, provider.StillPending(err)
		}
		fails, wait = 0, 0
		p = got
	}
}

// minPollInterval is the shortest pause between polls.
const minPollInterval = 100 * time.Millisecond

// pace is what a client has seen of a model's prediction times: an
// exponentially weighted mean (weight 1/8) and mean deviation (weight
// 1/4), as TCP estimates round trips.
type pace struct{ mean, dev time.Duration }

// expected returns how long model's predictions take, as far as this
// client has seen; zero before it has seen one.
func (c *Client) expected(model string) pace {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pace[model]
}

// observe folds a finished prediction's duration into what the client
// expects of its model. The duration is Replicate's own (created_at to
// completed_at) when the prediction has both, else observed.
func (c *Client) observe(model string, p *prediction, observed time.Duration) {
	d := observed
	if created, err := time.Parse(time.RFC3339Nano, p.CreatedAt); err == nil && p.CompletedAt != nil {
		if done, err := time.Parse(time.RFC3339Nano, *p.CompletedAt); err == nil && done.After(created) {
			d = done.Sub(created)
		}
	}
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.pace[model]
	if !ok {
		c.pace[model] = pace{mean: d, dev: d / 4}
		return
	}
	diff := d - old.mean
	old.mean += diff / 8
	old.dev += (diff.Abs() - old.dev) / 4
	c.pace[model] = old
}

// settled reports whether p has ended, and how.
func (c *Client) settled(p *prediction, text bool) (bool, error) {
	switch p.Status {
	case statusFailed:
		return true, c.failure(p)
	case statusCanceled, statusAborted:
		return true, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: p.Status, RequestID: p.ID,
			Message: fmt.Sprintf("prediction %s (deadline or cancel)", p.Status)}
	case statusSucceeded:
		if p.hasOutput() {
			return true, nil
		}
		e := &provider.Error{Class: provider.Transient, Provider: ProviderName, RequestID: p.ID, Message: "prediction succeeded without output"}
		if p.DataRemoved {
			e.Code, e.Message = codeDataRemoved, "prediction output was already removed (data retention expired)"
		}
		return true, e
	}
	// starting, processing, or a status this adapter does not know yet
	// (polling continues; Cancel-After bounds it server-side).
	return !text && p.hasOutput(), nil
}

// failure classifies a failed prediction by its error text.
func (c *Client) failure(p *prediction) error {
	msg := errorText(p.Error)
	if msg == "" {
		msg = "prediction failed without an error message"
	}
	msg = c.redact(msg)
	class, code := classifyFailure(msg)
	return &provider.Error{Class: class, Provider: ProviderName, Code: code, RequestID: p.ID, Message: truncate(msg, maxMessage)}
}

// errorText returns a prediction's error field as text (a string, or the
// raw JSON of anything else).
func errorText(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return strings.TrimSpace(s)
	}
	t := strings.TrimSpace(string(raw))
	if t == "null" {
		return ""
	}
	return t
}

// abandon cancels p remotely and returns the error for a wait cut off by
// ctx.
func (c *Client) abandon(ctx context.Context, p *prediction, cause error) error {
	c.cancelPrediction(ctx, p)
	return &provider.Error{Class: provider.Transient, Provider: ProviderName, RequestID: p.ID,
		Message: "stopped waiting for the prediction; asked Replicate to cancel it", Err: cause}
}

// create sends POST /models/{owner}/{name}/predictions.
// With sync false no Prefer header is sent, so Replicate answers at once
// with the prediction's id.
func (c *Client) create(ctx context.Context, model string, input map[string]any, sync bool) (*prediction, error) {
	owner, name, ok := strings.Cut(model, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return nil, c.errorf(provider.Input, "model %q is not owner/name", model)
	}
	body, err := json.Marshal(map[string]any{"input": input})
	if err != nil {
		return nil, c.errorf(provider.Input, "encode input: %v", err)
	}
	u := c.endpoint("models", owner, name, "predictions")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, c.errorf(provider.Input, "create request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.prefer != "" && sync {
		req.Header.Set("Prefer", c.prefer)
	}
	if c.cancel != "" {
		req.Header.Set("Cancel-After", c.cancel)
	}
	return c.doPrediction(req, "create prediction", "")
}

// get polls p.
func (c *Client) get(ctx context.Context, p *prediction) (*prediction, error) {
	u := c.sameHost(p.URLs.Get, c.endpoint("predictions", p.ID))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, c.errorf(provider.Transient, "poll request: %v", err)
	}
	return c.doPrediction(req, "poll prediction", p.ID)
}

// cancelPrediction asks Replicate to stop p, best effort: with a short
// timeout detached from ctx (which has usually ended), ignoring the answer.
func (c *Client) cancelPrediction(ctx context.Context, p *prediction) {
	if p == nil || p.ID == "" {
		return
	}
	ctx, stop := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
	defer stop()
	u := c.sameHost(p.URLs.Cancel, c.endpoint("predictions", p.ID, "cancel"))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return
	}
	resp, err := c.do(req)
	if err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
}

// doPrediction sends req and decodes a prediction from a 2xx answer.
func (c *Client) doPrediction(req *http.Request, op, id string) (*prediction, error) {
	resp, err := c.do(req)
	if err != nil {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, RequestID: id, Message: op, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode, RequestID: id, Message: op + ": reading the answer", Err: err}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := c.httpError(resp.StatusCode, resp.Header, body, op)
		e.RequestID = id
		return nil, e
	}
	var p prediction
	if err := json.Unmarshal(body, &p); err != nil || p.ID == "" {
		msg := op + ": malformed prediction JSON: " + truncate(compact(c.redact(string(body))), 120)
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: resp.StatusCode, RequestID: id, Message: msg, Err: err}
	}
	return &p, nil
}

// do sends req with the token.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "likeness-replicate")
	return c.cfg.HTTPClient.Do(req)
}

// endpoint joins path segments (escaped) onto the base URL.
func (c *Client) endpoint(segments ...string) string {
	u := *c.base
	path, raw := u.Path, u.EscapedPath()
	for _, s := range segments {
		path += "/" + s
		raw += "/" + url.PathEscape(s)
	}
	u.Path, u.RawPath = path, raw
	return u.String()
}

// sameHost returns raw when it is an absolute URL on the API's own scheme
// and host (urls.get and urls.cancel are), so the token is never sent
// elsewhere; otherwise fallback.
func (c *Client) sameHost(raw, fallback string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != c.base.Scheme || u.Host != c.base.Host {
		return fallback
	}
	return raw
}

// outputURL returns the image URL (or data: URI) of a finished prediction:
// the output string, or the first element of an output array.
func (c *Client) outputURL(p *prediction) (string, error) {
	var out any
	if err := json.Unmarshal(p.Output, &out); err != nil {
		return "", &provider.Error{Class: provider.Transient, Provider: ProviderName, RequestID: p.ID, Message: "malformed output", Err: err}
	}
	if arr, ok := out.([]any); ok && len(arr) > 0 {
		out = arr[0]
	}
	s, ok := out.(string)
	if !ok || !(strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "data:")) {
		return "", &provider.Error{Class: provider.Transient, Provider: ProviderName, RequestID: p.ID,
			Message: "output is not an image URL: " + truncate(compact(c.redact(string(p.Output))), 120)}
	}
	return s, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
