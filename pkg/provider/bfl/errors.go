package bfl

import (
	"bytes"
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
// done) as a Transient error; errors.Is(err, context.DeadlineExceeded) still
// works through Unwrap.
func (c *Client) transportError(op, id string, err error) error {
	msg := op + ": no answer"
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		msg = op + ": gave up (context done)"
	}
	return &provider.Error{Class: provider.Transient, Provider: ProviderName, RequestID: id, Message: msg, Err: redactErr(err, c.cfg.APIKey)}
}

// Classify maps a non-2xx BFL answer to a *provider.Error. It is exported
// for the worker's diagnostics and tests; Generate uses it for every HTTP
// failure. rateWait is the wait reported on a 429 without a hint.
func Classify(status int, header http.Header, body []byte, rateWait time.Duration) *provider.Error {
	e := &provider.Error{Provider: ProviderName, Status: status}
	var b errorBody
	_ = json.Unmarshal(body, &b)
	e.Code = b.code()
	e.Message = b.message(body)
	switch {
	case status == http.StatusTooManyRequests:
		e.Class = provider.Rate
		e.RetryAfter = provider.RetryAfter(header, time.Now())
		if e.RetryAfter == 0 && b.RetryAfter > 0 {
			e.RetryAfter = time.Duration(b.RetryAfter * float64(time.Second))
		}
		if e.RetryAfter == 0 {
			e.RetryAfter = rateWait
		}
	case status == http.StatusPaymentRequired, status == http.StatusUnauthorized, status == http.StatusForbidden:
		e.Class = provider.Billing
	case status == http.StatusRequestTimeout:
		e.Class = provider.Transient
	case status >= 400 && status < 500:
		// 400, 422 (schema), 404 (unknown endpoint), 413 (image too large).
		e.Class = provider.Input
	default:
		e.Class = provider.Transient
	}
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}
	return e
}

func (c *Client) classify(status int, header http.Header, body []byte, id string) *provider.Error {
	e := Classify(status, header, body, c.cfg.DefaultRateWait)
	e.RequestID = id
	e.Message = c.clip(e.Message)
	return e
}

// errorBody covers BFL's error shapes: FastAPI's {"detail": "..."} and
// {"detail": [{"loc": [...], "msg": "..."}]}, and the integration guide's
// {"error": "rate_limit_exceeded", "message": "...", "retry_after": 5}.
type errorBody struct {
	Detail     json.RawMessage `json:"detail"`
	Error      json.RawMessage `json:"error"`
	Message    string          `json:"message"`
	RetryAfter float64         `json:"retry_after"`
}

func (b errorBody) code() string {
	var s string
	if json.Unmarshal(b.Error, &s) == nil && !strings.Contains(s, " ") {
		return s
	}
	return ""
}

func (b errorBody) message(raw []byte) string {
	var parts []string
	if b.Message != "" {
		parts = append(parts, b.Message)
	}
	var s string
	if json.Unmarshal(b.Detail, &s) == nil && s != "" {
		parts = append(parts, s)
	} else {
		var items []struct {
			Loc []any  `json:"loc"`
			Msg string `json:"msg"`
		}
		if json.Unmarshal(b.Detail, &items) == nil {
			for _, it := range items {
				loc := make([]string, 0, len(it.Loc))
				for _, l := range it.Loc {
					loc = append(loc, fmt.Sprint(l))
				}
				parts = append(parts, strings.TrimPrefix(strings.Join(loc, ".")+": ", ": ")+it.Msg)
			}
		}
	}
	if len(parts) == 0 && json.Unmarshal(b.Error, &s) == nil && strings.Contains(s, " ") {
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return strings.TrimSpace(string(raw))
	}
	return strings.Join(parts, "; ")
}

// withDetails appends a poll answer's details (moderation reasons, error
// text) to msg.
func (c *Client) withDetails(msg string, pr pollResponse) string {
	for _, raw := range []json.RawMessage{pr.Details, pr.Error} {
		if s := compact(raw); s != "" {
			msg += ": " + s
		}
	}
	return c.clip(msg)
}

func (c *Client) bodyMessage(body []byte) string {
	var b errorBody
	_ = json.Unmarshal(body, &b)
	return c.clip(b.message(body))
}

// clip shortens provider text for an error message and removes the key,
// should a provider ever echo it.
func (c *Client) clip(s string) string {
	if c.cfg.APIKey != "" {
		s = strings.ReplaceAll(s, c.cfg.APIKey, "[redacted]")
	}
	return truncate(s, 300)
}

func compact(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return string(raw)
	}
	return buf.String()
}

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// redactErr keeps err's chain but hides the key from its text, should a
// transport error ever quote it.
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

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), n == float64(int(n))
	case uint64:
		return int(n), true
	}
	return 0, false
}
