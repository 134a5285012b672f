package ark

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/likeness-run/likeness/pkg/provider"
)

// maxMessage caps the provider text kept in an error message.
const maxMessage = 300

// apiError is Ark's error object:
// {"error":{"code":"...","message":"... Request ID: ...","param":"...","type":"..."}}.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Param   string `json:"param"`
	Type    string `json:"type"`
}

// statusError classifies a non-2xx answer.
func (c *Client) statusError(resp *http.Response, raw []byte, requestID string) *provider.Error {
	var env struct {
		Error *apiError `json:"error"`
	}
	if json.Unmarshal(raw, &env) == nil && env.Error != nil {
		return c.apiErr(resp, *env.Error, requestID)
	}
	msg := c.clean(string(raw))
	if msg == "" {
		msg = resp.Status
	}
	return c.classified(resp, "", msg, requestID)
}

// apiErr builds the error for an Ark error object, taking the request id
// from the message when the header had none.
func (c *Client) apiErr(resp *http.Response, ae apiError, requestID string) *provider.Error {
	if requestID == "" {
		requestID = messageRequestID(ae.Message)
	}
	msg := c.clean(ae.Message)
	if msg == "" {
		msg = c.clean(ae.Type)
	}
	if msg == "" {
		msg = resp.Status
	}
	if ae.Param != "" {
		msg += " (param " + c.clean(ae.Param) + ")"
	}
	return c.classified(resp, ae.Code, msg, requestID)
}

func (c *Client) classified(resp *http.Response, code, msg, requestID string) *provider.Error {
	e := &provider.Error{
		Class:     classify(resp.StatusCode, code),
		Provider:  ProviderName,
		Status:    resp.StatusCode,
		Code:      code,
		RequestID: requestID,
		Message:   msg,
	}
	if e.Class == provider.Rate {
		e.RetryAfter = provider.RetryAfter(resp.Header, time.Now())
		if e.RetryAfter <= 0 {
			e.RetryAfter = c.cfg.RateLimitWait
		}
	}
	return e
}

// classify maps an HTTP status and Ark error code onto a failure class
// (shared/providers.md section 6, completed from BytePlus's common error
// code table). The code decides where it is known; the status otherwise.
func classify(status int, code string) provider.Class {
	switch {
	// Moderation, input or output side, any status:
	// InputTextRiskDetection, InputImageRiskDetection,
	// OutputImageRiskDetection, OutputImageSensitiveContentDetected,
	// SensitiveContentDetected.Violence, ...
	case strings.Contains(code, "RiskDetection"), strings.Contains(code, "Sensitive"):
		return provider.Safety
	// Key, account or model activation: nothing a retry can fix.
	case code == "AuthenticationError", code == "AccountOverdueError", code == "AccessDenied",
		code == "ModelNotOpen", code == "ServiceNotOpen", code == "ServiceOverdue",
		code == "InvalidAccountStatus", code == "PermissionDenied",
		strings.HasPrefix(code, "InvalidEndpointOrModel"), code == "InvalidEndpoint.NotFound":
		return provider.Billing
	// 429s that are spent quota, not a rate: the free-trial quota
	// (QuotaExceeded, ModelQuotaExhausted in "Free Tokens Only" mode) or the
	// account's own inference cap (SetLimitExceeded).
	case code == "QuotaExceeded", code == "ModelQuotaExhausted", code == "SetLimitExceeded":
		return provider.Billing
	// "The inference endpoint is disabled or temporarily unavailable.
	// Please try again later."
	case code == "InvalidEndpoint.ClosedEndpoint":
		return provider.Transient
	}
	switch {
	case status == http.StatusTooManyRequests:
		// RateLimitExceeded.*, ServerOverloaded, RequestBurstTooFast, ...
		return provider.Rate
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusNotFound:
		// 404 on this single endpoint means the model or endpoint id is
		// unknown or not activated for the account: configuration.
		return provider.Billing
	case status == http.StatusRequestTimeout, status >= 500:
		return provider.Transient
	default:
		// MissingParameter, InvalidParameter (400) and any other 4xx.
		return provider.Input
	}
}

// messageRequestID extracts the id from Ark's "... Request ID: <id>" text.
func messageRequestID(msg string) string {
	i := strings.Index(strings.ToLower(msg), "request id:")
	if i < 0 {
		return ""
	}
	rest := strings.TrimSpace(msg[i+len("request id:"):])
	end := strings.IndexFunc(rest, func(r rune) bool {
		return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_')
	})
	if end >= 0 {
		rest = rest[:end]
	}
	return rest
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
