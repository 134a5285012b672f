package ideogram

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/likeness-run/likeness/pkg/provider"
)

// maxMessage caps the provider text kept in an error message.
const maxMessage = 300

// errorBody is what Ideogram puts in an error response. The documented
// shapes are {"error": "..."} and, for 402 and 429, a reject_reason
// ({"error": "...", "reject_reason": "inflight_limit",
// "max_inflight_requests": 10}); "message" and "detail" are read as
// fallbacks for gateway and validation answers.
type errorBody struct {
	Error               json.RawMessage `json:"error"`
	Message             string          `json:"message"`
	Detail              json.RawMessage `json:"detail"`
	RejectReason        string          `json:"reject_reason"`
	MaxInflightRequests int             `json:"max_inflight_requests"`
}

// statusError classifies a non-2xx answer (shared/providers.md section 5).
func (c *Client) statusError(resp *http.Response, raw []byte, requestID string) *provider.Error {
	e := &provider.Error{Provider: ProviderName, Status: resp.StatusCode, RequestID: requestID}
	var body errorBody
	if json.Unmarshal(raw, &body) == nil {
		e.Code = body.RejectReason
		e.Message = c.clean(firstText(body.Error, body.Message, body.Detail))
	}
	if e.Message == "" {
		e.Message = c.snippet(raw)
	}
	if e.Message == "" {
		e.Message = resp.Status
	}
	switch s := resp.StatusCode; {
	case s == http.StatusTooManyRequests:
		e.Class = provider.Rate
		e.RetryAfter = provider.RetryAfter(resp.Header, time.Now())
		if e.RetryAfter <= 0 {
			e.RetryAfter = c.cfg.RateLimitWait
		}
		if body.MaxInflightRequests > 0 {
			e.Message += fmt.Sprintf(" (max %d in flight)", body.MaxInflightRequests)
		}
	case s == http.StatusPaymentRequired, s == http.StatusUnauthorized, s == http.StatusForbidden:
		// 402: insufficient_funds or daily_limit; 401: bad key; 403: no
		// access to the endpoint or model. Retrying cannot help.
		e.Class = provider.Billing
	case s == http.StatusUnprocessableEntity:
		// "Prompt or provided image failed the safety checks" (not billed).
		e.Class = provider.Safety
	case s == http.StatusRequestTimeout, s >= 500:
		e.Class = provider.Transient
	default:
		// 400 invalid request, 404 asset not found, 413 upload too large,
		// and any other 4xx: the request itself is wrong.
		e.Class = provider.Input
	}
	return e
}

// firstText returns the first non-empty human-readable text among the
// candidates: a JSON string, an object's "message"/"msg", or the first
// element of an array of such objects (validation details).
func firstText(candidates ...any) string {
	for _, c := range candidates {
		var s string
		switch v := c.(type) {
		case string:
			s = v
		case json.RawMessage:
			s = rawText(v)
		}
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return ""
}

func rawText(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var obj struct {
		Message string `json:"message"`
		Msg     string `json:"msg"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		return firstText(obj.Message, obj.Msg)
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil && len(list) > 0 {
		return rawText(list[0])
	}
	return ""
}

// snippet returns the start of a response body for an error message.
func (c *Client) snippet(raw []byte) string {
	return c.clean(string(raw))
}

// clean trims provider text to maxMessage bytes on a rune boundary and
// removes the API key should the provider ever echo it.
func (c *Client) clean(s string) string {
	s = strings.TrimSpace(s)
	if c.cfg.APIKey != "" {
		s = strings.ReplaceAll(s, c.cfg.APIKey, "[redacted]")
	}
	if len(s) > maxMessage {
		cut := maxMessage
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}
