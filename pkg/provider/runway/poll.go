package runway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// wait polls the task until it succeeds or fails. It sets *done once the
// task no longer runs on Runway's side. A resumed task is polled at once,
// and one Runway no longer has (404) is provider.ErrGone.
func (c *Client) wait(ctx context.Context, id string, done *bool, resumed bool) (task, error) {
	first := c.cfg.PollInterval
	if resumed {
		first = 0
	}
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return task{}, c.transportError("wait for task", id, ctx.Err())
		case <-timer.C:
		}
		t, err := c.getTask(ctx, id)
		if err != nil {
			if err.Code == "task_not_found" {
				*done = true
				if resumed {
					return task{}, provider.GoneError(ProviderName, id, "Runway no longer has the resumed task (deleted or purged): "+err.Message)
				}
				return task{}, err
			}
			if *done { // recorded: the caller resumes the task later
				return task{}, provider.StillPending(err)
			}
			return task{}, err
		}
		switch t.Status {
		case statusSucceeded:
			*done = true
			if len(t.Output) == 0 || t.Output[0] == "" {
				return task{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: "malformed_response", RequestID: id,
					Message: "SUCCEEDED without output"}
			}
			return t, nil
		case statusFailed:
			*done = true
			msg := t.Failure
			if msg == "" {
				msg = "task failed"
			}
			return task{}, &provider.Error{Class: ClassifyFailure(t.FailureCode), Provider: ProviderName, Code: t.FailureCode, RequestID: id,
				Message: c.clip(msg)}
		case statusCancelled:
			*done = true
			return task{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: statusCancelled, RequestID: id,
				Message: "task was cancelled or deleted"}
		}
		// PENDING, THROTTLED (over the tier's concurrency: queued by
		// Runway, not a failure), RUNNING, and any status added later keep
		// polling; ctx bounds the wait.
		timer.Reset(c.cfg.PollInterval)
	}
}

// getTask fetches the task once.
func (c *Client) getTask(ctx context.Context, id string) (task, *provider.Error) {
	status, hdr, body, err := c.do(ctx, http.MethodGet, c.taskURL(id), nil)
	if err != nil {
		return task{}, c.transportError("poll", id, err)
	}
	if status == http.StatusNotFound {
		return task{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: status, Code: "task_not_found", RequestID: id,
			Message: "task no longer exists: " + c.bodyMessage(body)}
	}
	if status != http.StatusOK {
		return task{}, c.classify(status, hdr, body, id)
	}
	var t task
	if err := json.Unmarshal(body, &t); err != nil || t.Status == "" {
		return task{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Status: status, Code: "malformed_response", RequestID: id,
			Message: "task answer is not a task: " + c.clip(string(body)), Err: err}
	}
	return t, nil
}

// download fetches the task's first output. An expired URL is re-issued by
// fetching the task once more. For a resumed task, an output that is still
// missing after that, or a task gone meanwhile, is provider.ErrGone.
func (c *Client) download(ctx context.Context, id string, t task, resumed bool) (provider.Image, error) {
	img, err := c.fetchOutput(ctx, id, t)
	var pe *provider.Error
	if resumed && errors.As(err, &pe) && (pe.Code == "task_not_found" || pe.Code == "output_expired" && (pe.Status == http.StatusNotFound || pe.Status == http.StatusGone)) {
		return provider.Image{}, provider.GoneError(ProviderName, id, "the resumed task's output is gone: "+pe.Message)
	}
	return img, err
}

// fetchOutput is download without the resume rule.
func (c *Client) fetchOutput(ctx context.Context, id string, t task) (provider.Image, error) {
	img, err := provider.Fetch(ctx, c.cfg.HTTPClient, ProviderName, t.Output[0])
	if err == nil {
		return img, nil
	}
	var pe *provider.Error
	if !errors.As(err, &pe) || !expired(pe.Status) || ctx.Err() != nil {
		if pe != nil {
			pe.RequestID = id
		}
		return provider.Image{}, err
	}
	fresh, ferr := c.getTask(ctx, id)
	if ferr != nil {
		return provider.Image{}, ferr
	}
	if fresh.Status != statusSucceeded || len(fresh.Output) == 0 {
		return provider.Image{}, &provider.Error{Class: provider.Transient, Provider: ProviderName, Code: "output_expired", RequestID: id,
			Message: fmt.Sprintf("output URL expired and the re-fetched task is %s without output", fresh.Status)}
	}
	img, err = provider.Fetch(ctx, c.cfg.HTTPClient, ProviderName, fresh.Output[0])
	if err != nil {
		if errors.As(err, &pe) {
			pe.RequestID = id
			pe.Code = "output_expired"
			pe.Message = "output URL still unusable after re-fetching the task: " + pe.Message
		}
		return provider.Image{}, err
	}
	return img, nil
}

func expired(status int) bool {
	return status == http.StatusNotFound || status == http.StatusGone || status == http.StatusForbidden
}

// cancel deletes an abandoned task, best effort: Runway cancels it if it is
// PENDING, THROTTLED or RUNNING. It runs even when ctx is done.
func (c *Client) cancel(ctx context.Context, id string) {
	cctx, stop := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.CancelTimeout)
	defer stop()
	_, _, _, _ = c.do(cctx, http.MethodDelete, c.taskURL(id), nil)
}

func (c *Client) taskURL(id string) string {
	return c.cfg.BaseURL + "/v1/tasks/" + url.PathEscape(id)
}
