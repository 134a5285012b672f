package replicate

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/likeness-run/likeness/pkg/provider"
)

// maxMessage caps provider text copied into an error message.
const maxMessage = 300

// problem is Replicate's error body: problem+json (title, detail, status),
// plus retry_after on 429s.
type problem struct {
	Title      string   `json:"title"`
	Detail     string   `json:"detail"`
	Status     int      `json:"status"`
	RetryAfter *float64 `json:"retry_after"`
}

// resetsIn matches the wait in "Your rate limit resets in ~7s."
var resetsIn = regexp.MustCompile(`resets in ~?\s*(\d+(?:\.\d+)?)\s*s`)

// httpError classifies a non-2xx answer to op (shared/providers.md,
// Replicate failure signals).
func (c *Client) httpError(status int, h http.Header, body []byte, op string) *provider.Error {
	var pb problem
	isJSON := json.Unmarshal(body, &pb) == nil
	msg := pb.Detail
	if pb.Title != "" && !strings.HasPrefix(strings.ToLower(msg), strings.ToLower(pb.Title)) {
		if msg == "" {
			msg = pb.Title
		} else {
			msg = pb.Title + ": " + msg
		}
	}
	if msg == "" {
		msg = compact(string(body))
		if !isJSON && strings.HasPrefix(msg, "<") {
			msg = http.StatusText(status) // an HTML page from a proxy says nothing more
		}
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	e := &provider.Error{Provider: ProviderName, Status: status, Message: truncate(op+": "+c.redact(msg), maxMessage)}
	switch {
	case status == http.StatusTooManyRequests:
		e.Class = provider.Rate
		e.RetryAfter = retryAfter(pb, h, msg)
	case status == http.StatusUnauthorized, status == http.StatusPaymentRequired, status == http.StatusForbidden:
		// Bad or revoked token, or no credit: retrying cannot help.
		e.Class = provider.Billing
	case status == http.StatusRequestTimeout:
		e.Class = provider.Transient
	case status >= 400 && status < 500:
		// 400/422 schema validation, 404 unknown model or prediction,
		// 413 file too large.
		e.Class = provider.Input
	default:
		e.Class = provider.Transient
	}
	return e
}

// retryAfter reads a 429's wait: the body's retry_after (seconds), else the
// Retry-After header, else the "resets in ~Ns" text.
func retryAfter(pb problem, h http.Header, msg string) time.Duration {
	if pb.RetryAfter != nil && *pb.RetryAfter > 0 {
		return time.Duration(*pb.RetryAfter * float64(time.Second))
	}
	if d := provider.RetryAfter(h, time.Now()); d > 0 {
		return d
	}
	if m := resetsIn.FindStringSubmatch(msg); m != nil {
		if f, err := strconv.ParseFloat(m[1], 64); err == nil {
			return time.Duration(f * float64(time.Second))
		}
	}
	return 0
}

// errorCode matches Replicate's error codes, e.g. "E1000", "E005".
var errorCode = regexp.MustCompile(`\bE\d{3,4}\b`)

// classifyFailure classifies a failed prediction's error text and extracts
// its E#### code. Codes decide first (E005 sensitive content → Safety, E1001
// out of memory → Input, E1000 unknown → Transient), then wording: partner
// models report moderation as free text (NSFW, "sensitive", safety system,
// moderation, content policy, flagged) → Safety; out of memory → Input;
// gpt-image-1 passes OpenAI's key, verification and quota errors through →
// Billing; rate-limit wording → Rate (no wait known). Anything else is
// Transient. Partner wordings are unconfirmed (providers.md); the lists err
// towards Transient, which at worst costs a retry.
func classifyFailure(msg string) (provider.Class, string) {
	code := errorCode.FindString(msg)
	low := strings.ToLower(msg)
	switch {
	case code == "E005":
		return provider.Safety, code
	case code == "E1001":
		return provider.Input, code
	case code == "E1000":
		return provider.Transient, code
	case containsAny(low, "nsfw", "sensitive", "safety", "moderation", "content policy", "flagged"):
		return provider.Safety, code
	case containsAny(low, "out of memory", "cuda oom"):
		return provider.Input, code
	case containsAny(low, "incorrect api key", "invalid api key", "invalid_api_key", "must be verified",
		"insufficient_quota", "exceeded your current quota", "billing"):
		return provider.Billing, code
	case containsAny(low, "rate limit", "rate_limit"):
		return provider.Rate, code
	}
	return provider.Transient, code
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

var (
	// seedLine is printed by FLUX models: "Using seed: 1234".
	seedLine = regexp.MustCompile(`(?m)Using seed:\s*(\d+)`)
	// promptLine matches a prompt-rewrite line; the wording per model is
	// unconfirmed, so a few plausible forms are accepted.
	promptLine = regexp.MustCompile(`(?mi)^\s*(?:revised|rewritten|upsampled|enhanced|expanded|magic)[ _-]?prompt\s*[:=]\s*(.+?)\s*$`)
)

// parseLogs extracts the seed and a rewritten prompt from prediction logs.
func parseLogs(logs string) (seed int64, revised string) {
	if m := seedLine.FindStringSubmatch(logs); m != nil {
		if n, err := strconv.ParseInt(m[1], 10, 64); err == nil {
			seed = n
		}
	}
	if m := promptLine.FindStringSubmatch(logs); m != nil {
		revised = truncate(m[1], 4<<10)
	}
	return seed, revised
}

// trimLogs keeps the last n bytes of logs (where errors are), cut at a rune
// boundary and marked as trimmed.
func trimLogs(logs string, n int) string {
	if len(logs) <= n {
		return logs
	}
	const mark = "[...]\n"
	s := logs[len(logs)-(n-len(mark)):]
	for len(s) > 0 && !utf8.RuneStart(s[0]) {
		s = s[1:]
	}
	return mark + s
}

// truncate cuts s to at most n bytes at a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n-3]
	for len(s) > 0 {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1] // a rune cut in half
	}
	return s + "..."
}

// compact collapses whitespace so a body fits on one line.
func compact(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
