package runway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// transportError wraps a failure to get an HTTP answer (network error, ctx
// done) as a Transient error; errors.Is(err, context.Canceled) still works.
func (c *Client) transportError(op, id string, err error) *provider.Error {
	msg := op + ": no answer"
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		msg = op + ": gave up (context done)"
	}
	return &provider.Error{Class: provider.Transient, Provider: ProviderName, RequestID: id, Message: msg, Err: redactErr(err, c.cfg.APIKey)}
}

// Classify maps a non-2xx Runway answer to a *provider.Error. Generate uses
// it for every HTTP failure; rateWait is the wait reported on a 429 without
// Retry-After.
func Classify(status int, header http.Header, body []byte, rateWait time.Duration) *provider.Error {
	e := &provider.Error{Provider: ProviderName, Status: status, Message: errorMessage(body)}
	switch {
	case status == http.StatusTooManyRequests:
		e.Class = provider.Rate
		e.RetryAfter = provider.RetryAfter(header, time.Now())
		if e.RetryAfter == 0 {
			e.RetryAfter = rateWait
		}
	case status == http.StatusBadRequest && mentionsCredits(e.Message):
		// Runway reports an empty balance as a 400 (wording unconfirmed).
		e.Class, e.Code = provider.Billing, "insufficient_credits"
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusPaymentRequired:
		e.Class = provider.Billing
	case status == http.StatusRequestTimeout:
		e.Class = provider.Transient
	case status >= 400 && status < 500:
		e.Class = provider.Input
	default:
		e.Class = provider.Transient
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

// ClassifyFailure maps a FAILED task's failureCode to a class. Codes are
// dot-separated, most generic segment first; unknown codes are Transient so
// the queue's bounded retries decide.
func ClassifyFailure(code string) provider.Class {
	has := func(prefix string) bool { return code == prefix || strings.HasPrefix(code, prefix+".") }
	switch {
	case has("SAFETY"), has("INPUT_PREPROCESSING.SAFETY"):
		return provider.Safety
	case has("ASSET.INVALID"):
		return provider.Input
	case has("INTERNAL.BAD_OUTPUT"), has("INPUT_PREPROCESSING.INTERNAL"), has("INTERNAL"):
		return provider.Transient
	}
	return provider.Transient
}

func mentionsCredits(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "enough credits") || strings.Contains(m, "insufficient credits") || strings.Contains(m, "credit balance")
}

// errorMessage reads Runway's {"error": "...", "issues": [...]} body.
func errorMessage(body []byte) string {
	var b struct {
		Error  string `json:"error"`
		Issues []struct {
			Message string `json:"message"`
			Path    []any  `json:"path"`
		} `json:"issues"`
	}
	if json.Unmarshal(body, &b) != nil {
		return strings.TrimSpace(string(body))
	}
	parts := []string{}
	if b.Error != "" {
		parts = append(parts, b.Error)
	}
	for _, is := range b.Issues {
		path := make([]string, 0, len(is.Path))
		for _, p := range is.Path {
			path = append(path, fmt.Sprint(p))
		}
		parts = append(parts, strings.TrimPrefix(strings.Join(path, ".")+": ", ": ")+is.Message)
	}
	if len(parts) == 0 {
		return strings.TrimSpace(string(body))
	}
	return strings.Join(parts, "; ")
}

func (c *Client) classify(status int, header http.Header, body []byte, id string) *provider.Error {
	e := Classify(status, header, body, c.cfg.DefaultRateWait)
	e.RequestID = id
	e.Message = c.clip(e.Message)
	return e
}

func (c *Client) bodyMessage(body []byte) string { return c.clip(errorMessage(body)) }

// clip shortens provider text for an error message and removes the key,
// should a provider ever echo it.
func (c *Client) clip(s string) string {
	if c.cfg.APIKey != "" {
		s = strings.ReplaceAll(s, c.cfg.APIKey, "[redacted]")
	}
	s = strings.TrimSpace(s)
	if len(s) <= 300 {
		return s
	}
	cut := 300
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// redactErr keeps err's chain but hides the key from its text.
func redactErr(err error, key string) error {
	if err == nil || key == "" || !strings.Contains(err.Error(), key) {
		return err
	}
	return &redacted{err: err, msg: strings.ReplaceAll(err.Error(), key, "[redacted]")}
}

type redacted struct {
	err error
	msg string
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }
