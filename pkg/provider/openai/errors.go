package openai

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/likeness-run/likeness/pkg/provider"
)

// maxMessage caps the provider text kept in an error message.
const maxMessage = 300

// apiError is OpenAI's error body: {"error":{"message","type","param","code"}}.
type apiError struct {
	Error *struct {
		Message string     `json:"message"`
		Type    flexString `json:"type"`
		Param   flexString `json:"param"`
		Code    flexString `json:"code"`
	} `json:"error"`
}

// flexString accepts a JSON string, number or null (code is null on many
// OpenAI errors and has been numeric on some gateways).
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*s = ""
	case len(b) > 0 && b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = flexString(v)
	default:
		*s = flexString(b)
	}
	return nil
}

// billingCodes are error codes (or types) that mean the account cannot pay:
// retrying will not help until a human acts.
var billingCodes = map[string]bool{
	"insufficient_quota":                   true,
	"credit_balance_exhausted":             true,
	"organization_spend_limit_exceeded":    true,
	"project_spend_limit_exceeded":         true,
	"organization_usage_limit_exceeded":    true,
	"billing_hard_limit_reached":           true,
	"billing_not_active":                   true,
	"access_terminated":                    true,
	"account_deactivated":                  true,
	"invalid_api_key":                      true,
	"invalid_organization":                 true,
	"unsupported_country_region_territory": true,
}

// safetyCodes are moderation rejections.
var safetyCodes = map[string]bool{
	"moderation_blocked":       true,
	"content_policy_violation": true,
	"content_filter":           true,
}

// Classify turns an unsuccessful HTTP answer of the Images API into a
// *provider.Error, deciding by the body's error.code and error.type as well
// as the status (a 429 is either a rate limit or an empty account):
//
//	error.code/type insufficient_quota, *_spend_limit_exceeded,
//	  credit_balance_exhausted, billing_* (any status)     -> Billing
//	code moderation_blocked / content_policy_violation, or a
//	  "safety system" message (4xx)                        -> Safety
//	429 otherwise (rate_limit_exceeded, slow_down)         -> Rate, with RetryAfter
//	401, 403 (bad key, unverified organisation, region)    -> Billing
//	404 (model_not_found), other 4xx                       -> Input
//	408, 409, 5xx, anything else                           -> Transient
//
// The wait of a Rate error comes from retry-after-ms, then Retry-After, then
// the x-ratelimit-reset-* header of the exhausted limit, then the message's
// "try again in 1.5s"; it is zero when the answer names none. now reads
// HTTP-date Retry-After values.
func Classify(status int, h http.Header, body []byte, now time.Time) *provider.Error {
	e := &provider.Error{Provider: ProviderName, Status: status, RequestID: h.Get("x-request-id")}
	var parsed apiError
	var typ, code, msg string
	if json.Unmarshal(body, &parsed) == nil && parsed.Error != nil {
		typ, code, msg = string(parsed.Error.Type), string(parsed.Error.Code), parsed.Error.Message
	} else {
		msg = snippet(body)
	}
	e.Code = code
	if e.Code == "" {
		e.Code = typ
	}
	e.Message = truncate(msg)
	if e.Message == "" {
		e.Message = http.StatusText(status)
	}

	lower := strings.ToLower(msg)
	switch {
	case billingCodes[code] || typ == "insufficient_quota":
		e.Class = provider.Billing
	case status >= 400 && status < 500 && (safetyCodes[code] || safetyCodes[typ] || strings.Contains(lower, "safety system")):
		e.Class = provider.Safety
	case status == http.StatusTooManyRequests:
		e.Class = provider.Rate
		e.RetryAfter = rateWait(h, typ, msg, now)
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		e.Class = provider.Billing
	case status == http.StatusRequestTimeout, status == http.StatusConflict:
		e.Class = provider.Transient
	case status >= 400 && status < 500:
		e.Class = provider.Input
	default:
		e.Class = provider.Transient
	}
	return e
}

// retryIn finds "try again in 7.188s" / "try again in 6m0s" / "try again
// after 51.84 seconds" in a rate-limit message.
var retryIn = regexp.MustCompile(`(?i)try again (?:in|after) ([0-9][0-9.hmsu]*)(?:\s*(seconds?|ms|milliseconds?))?`)

// rateWait is the wait a 429 asks for; see Classify.
func rateWait(h http.Header, typ, msg string, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("retry-after-ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms >= 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	if d := provider.RetryAfter(h, now); d > 0 {
		return d
	}
	if d := resetWait(h, typ, msg); d > 0 {
		return d
	}
	if m := retryIn.FindStringSubmatch(msg); m != nil {
		v := strings.TrimRight(m[1], ".")
		switch strings.ToLower(m[2]) {
		case "second", "seconds":
			v += "s"
		case "ms", "millisecond", "milliseconds":
			v += "ms"
		}
		if d, ok := ParseReset(v); ok {
			return d
		}
	}
	return 0
}

// resetWait reads x-ratelimit-reset-requests or -tokens, whichever limit the
// 429 is about: the one the error names (type "requests"/"tokens", or the
// message's "per min (RPM|IPM|TPM)"), else the one with nothing remaining,
// else the longer of the two.
func resetWait(h http.Header, typ, msg string) time.Duration {
	reqs, reqOK := ParseReset(h.Get("x-ratelimit-reset-requests"))
	toks, tokOK := ParseReset(h.Get("x-ratelimit-reset-tokens"))
	lower := strings.ToLower(msg)
	aboutTokens := typ == "tokens" || strings.Contains(lower, "tokens per min") || strings.Contains(lower, "(tpm)")
	aboutRequests := typ == "requests" || strings.Contains(lower, "requests per min") ||
		strings.Contains(lower, "images per min") || strings.Contains(lower, "(rpm)") || strings.Contains(lower, "(ipm)")
	switch {
	case aboutTokens && tokOK:
		return toks
	case aboutRequests && reqOK:
		return reqs
	case strings.TrimSpace(h.Get("x-ratelimit-remaining-requests")) == "0" && reqOK:
		return reqs
	case strings.TrimSpace(h.Get("x-ratelimit-remaining-tokens")) == "0" && tokOK:
		return toks
	}
	return max(reqs, toks)
}

// ParseReset parses the duration form of OpenAI's x-ratelimit-reset-*
// headers: "1s", "6m0s", "20ms", "1h2m3.5s", also "2d3h" and a bare number
// of seconds ("0.5"). It reports false for an empty or unreadable value.
func ParseReset(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	var days time.Duration
	if i := strings.IndexByte(v, 'd'); i > 0 {
		n, err := strconv.ParseFloat(v[:i], 64)
		if err != nil || n < 0 {
			return 0, false
		}
		days = time.Duration(n * float64(24*time.Hour))
		v = v[i+1:]
		if v == "" {
			return days, true
		}
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, false
	}
	return days + d, true
}

// snippet is a short, printable excerpt of a body that is not OpenAI's
// error JSON (a gateway's HTML page, a truncated answer).
func snippet(body []byte) string {
	s := strings.Join(strings.Fields(string(body)), " ")
	return truncate(s)
}

// truncate cuts s to maxMessage bytes on a rune boundary.
func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
