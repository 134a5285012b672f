package bfl

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// poll waits for the task behind pollURL to leave Pending. A resumed task
// (Request.Resume) is polled at once, and one BFL no longer knows (404,
// "Task not found") is provider.ErrGone rather than a lost task.
// With recorded set (the caller can resume the task), a poll the provider
// does not answer is returned marked provider.StillPending.
func (c *Client) poll(ctx context.Context, id, pollURL string, resumed, recorded bool) (readyResult, error) {
	unread := func(err error) error {
		if recorded {
			return provider.StillPending(err)
		}
		return err
	}
	first := c.cfg.PollInterval
	if resumed {
		first = 0
	}
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return readyResult{}, c.transportError("wait for result", id, ctx.Err())
		case <-timer.C:
		}
		status, hdr, body, err := c.do(ctx, http.MethodGet, pollURL, nil)
		if err != nil {
			return readyResult{}, unread(c.transportError("poll", id, err))
		}
		if status == http.StatusNotFound {
			if resumed {
				return readyResult{}, provider.GoneError(ProviderName, id, "BFL no longer knows the resumed task: "+c.bodyMessage(body))
			}
			return readyResult{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: status, Code: "task_not_found", RequestID: id,
				Message: "task unknown or expired: " + c.bodyMessage(body)}
		}
		if status != http.StatusOK {
			return readyResult{}, unread(c.classify(status, hdr, body, id))
		}
		var pr pollResponse
		if err := json.Unmarshal(body, &pr); err != nil {
			return readyResult{}, unread(&provider.Error{Class: provider.Transient, Provider: ProviderName, Status: status, Code: "malformed_response", RequestID: id,
				Message: "poll answer is not JSON: " + c.clip(string(body)), Err: err})
		}
		switch pr.Status {
		case statusReady:
			var r readyResult
			if err := json.Unmarshal(pr.Result, &r); err != nil || r.Sample == "" {
				return readyResult{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: "malformed_response", RequestID: id,
					Message: "Ready without result.sample: " + c.clip(string(pr.Result))}
			}
			return r, nil
		case statusRequestModerated:
			return readyResult{}, &provider.Error{Class: provider.Safety, Provider: ProviderName, Code: pr.Status, RequestID: id,
				Message: c.withDetails("input (prompt or image) flagged by BFL moderation before processing", pr)}
		case statusContentModerated:
			return readyResult{}, &provider.Error{Class: provider.Safety, Provider: ProviderName, Code: pr.Status, RequestID: id,
				Message: c.withDetails("output flagged by BFL moderation; another seed may pass", pr)}
		case statusError, statusFailed:
			return readyResult{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: pr.Status, RequestID: id,
				Message: c.withDetails("generation failed", pr)}
		case statusTaskNotFound:
			if resumed {
				return readyResult{}, provider.GoneError(ProviderName, id, "BFL no longer knows the resumed task (Task not found)")
			}
			return readyResult{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: "task_not_found", RequestID: id,
				Message: "task unknown or expired; resubmit"}
		}
		// Pending, and any status BFL may add later, keep polling; ctx
		// bounds the wait.
		timer.Reset(c.cfg.PollInterval)
	}
}

// pollingURL checks a polling URL before the key is sent to it: an http(s)
// URL on BaseURL's host (any port: BFL's clusters, and the fake's), or an
// https URL on bfl.ai or a subdomain (the global endpoint routes tasks to
// api.us1.bfl.ai and the like). It returns "" for anything else.
func (c *Client) pollingURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return ""
	}
	base, _ := url.Parse(c.cfg.BaseURL) // checked by New
	host := strings.ToLower(u.Hostname())
	switch {
	case u.Scheme == base.Scheme && host == strings.ToLower(base.Hostname()):
		return u.String()
	case u.Scheme == "https" && (host == "bfl.ai" || strings.HasSuffix(host, ".bfl.ai")):
		return u.String()
	}
	return ""
}

// resumeURL is where a resumed task is polled: its recorded polling_url
// when pollingURL accepts it, else BaseURL's get_result for its id.
func (c *Client) resumeURL(p provider.Pending) string {
	if u := c.pollingURL(p.PollURL); u != "" {
		return u
	}
	return c.cfg.BaseURL + "/get_result?id=" + url.QueryEscape(p.ID)
}
