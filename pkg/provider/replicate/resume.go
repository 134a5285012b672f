package replicate

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// pending is what OnPending reports for a created prediction p; began is
// when the create was sent, used when Replicate's created_at is unreadable.
func (c *Client) pending(p *prediction, began time.Time) provider.Pending {
	created, err := time.Parse(time.RFC3339Nano, p.CreatedAt)
	if err != nil {
		created = began
	}
	return provider.Pending{Provider: ProviderName, ID: p.ID, PollURL: p.URLs.Get, CreatedAt: created.UTC()}
}

// resume reads back a prediction an earlier delivery created, instead of
// creating one: GET its urls.get when that points at the configured API
// (the token goes nowhere else), else GET {base}/predictions/{id}. An id
// Replicate does not know (404) is gone.
func (c *Client) resume(ctx context.Context, pend provider.Pending) (*prediction, error) {
	if pend.Provider != ProviderName || pend.ID == "" {
		return nil, provider.GoneError(ProviderName, pend.ID, "nothing to resume: the pending request is not a Replicate prediction ("+pend.Provider+")")
	}
	p := &prediction{ID: pend.ID}
	p.URLs.Get = pend.PollURL
	next, err := c.get(ctx, p)
	if err != nil {
		var pe *provider.Error
		if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
			return nil, provider.GoneError(ProviderName, pend.ID, "Replicate no longer knows the prediction: "+pe.Message)
		}
		return nil, provider.StillPending(err)
	}
	return next, nil
}

// gone turns the "succeeded without output" of a resumed prediction whose
// data was removed into ErrGone; other errors pass unchanged.
func (c *Client) gone(resumed bool, err error) error {
	var pe *provider.Error
	if resumed && errors.As(err, &pe) && pe.Code == codeDataRemoved {
		return provider.GoneError(ProviderName, pe.RequestID, pe.Message)
	}
	return err
}
