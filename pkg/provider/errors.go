package provider

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Class is a failure class from shared/providers.md. It decides what the
// worker does with a failed attempt.
type Class string

// Failure classes. The zero Class means "no failure".
const (
	// Transient failures (5xx, timeouts, dropped connections) back off with jitter.
	Transient Class = "transient"
	// Rate failures wait exactly what the provider said and are not counted as
	// failed attempts.
	Rate Class = "rate"
	// Input failures are permanent: the request itself is wrong.
	Input Class = "input"
	// Safety failures are moderation rejections; they retry with another seed
	// within the spec's output-retry allowance.
	Safety Class = "safety"
	// Billing failures (credit, quota, revoked key) stop the provider for the run.
	Billing Class = "billing"
	// BadOutput means the provider answered but the image failed an output
	// check (blank, wrong size, undecodable); treated like Safety.
	BadOutput Class = "bad_output"
	// Infra means likeness's own infrastructure (Redis, the object store,
	// the queue) kept failing a task for longer than its run allows
	// (infra_retry_for). No adapter returns it; the worker does.
	Infra Class = "infra"
)

// Sentinel errors for the permanent classes; errors.Is matches an *Error of
// the same class against them.
var (
	ErrInput   = errors.New("invalid input")
	ErrSafety  = errors.New("rejected by safety filter")
	ErrBilling = errors.New("billing or credentials problem")
	// ErrGone means a request being resumed (Request.Resume) can no longer
	// be: the provider does not know its id any more, or its output was
	// removed. Nothing was created; the caller may create a new request.
	ErrGone = errors.New("provider request is gone")
)

// Error is a failure reported by a provider, with what the manifest needs to
// explain it.
type Error struct {
	// Class decides the retry behaviour.
	Class Class
	// Provider is the adapter name, e.g. "replicate".
	Provider string
	// Status is the HTTP status, 0 if the failure was not an HTTP answer.
	Status int
	// Code is the provider's machine-readable code, if any
	// (e.g. "insufficient_quota", "SAFETY.INPUT.TEXT", "E1001").
	Code string
	// RequestID is the provider's id for the request, if known.
	RequestID string
	// Message is the provider's human-readable explanation.
	Message string
	// RetryAfter is the wait the provider asked for (Rate class), or zero.
	RetryAfter time.Duration
	// CostUSD is what the provider billed for the failed request, when it
	// bills failures (Ideogram charges for images it withholds as unsafe).
	CostUSD float64
	// Err is an underlying cause (network error, decode error), if any.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Provider)
	if e.Status != 0 {
		fmt.Fprintf(&b, " %d", e.Status)
	}
	fmt.Fprintf(&b, " %s", e.Class)
	if e.Code != "" {
		fmt.Fprintf(&b, " [%s]", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request %s)", e.RequestID)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is(err, ErrInput) and friends match by class.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrInput:
		return e.Class == Input
	case ErrSafety:
		return e.Class == Safety
	case ErrBilling:
		return e.Class == Billing
	}
	return false
}

// GoneError returns the error an adapter gives for a resumed request
// (Request.Resume) the provider no longer has: it matches ErrGone, and is
// Transient so that ClassOf still steers a caller that does not check for
// ErrGone towards a retry.
func GoneError(prov, requestID, message string) *Error {
	return &Error{Class: Transient, Provider: prov, Code: "gone", RequestID: requestID, Message: message, Err: ErrGone}
}

// ClassOf classifies any error from an adapter. Errors that are not *Error
// (network failures, context cancellation during shutdown) are Transient, so
// the task is requeued rather than failed.
func ClassOf(err error) Class {
	if err == nil {
		return ""
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Class
	}
	return Transient
}

// RetryAfterOf returns the wait a Rate error asked for, or zero.
func RetryAfterOf(err error) time.Duration {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.RetryAfter
	}
	return 0
}

// CostOf returns what a failed request was billed, or zero.
func CostOf(err error) float64 {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.CostUSD
	}
	return 0
}

// ErrStillPending marks a failure to read the state of a recorded
// asynchronous request (a poll or an output download the provider did not
// answer): it says nothing about the request itself, which may still be
// running or done and paid for. The worker keeps the request and resumes it
// later instead of paying for a new one.
var ErrStillPending = errors.New("provider request still open: its state could not be read")

// StillPending marks err, a transient or rate failure to read a recorded
// request's state, with ErrStillPending; errors.Is matches both, and ClassOf
// still sees err's class. Other errors (a billing answer, a gone request)
// are returned unchanged: waiting would not help them.
func StillPending(err error) error {
	if err == nil || errors.Is(err, ErrGone) {
		return err
	}
	if c := ClassOf(err); c != Transient && c != Rate {
		return err
	}
	return stillPending{err}
}

type stillPending struct{ err error }

func (e stillPending) Error() string   { return e.err.Error() + " (request left open to resume)" }
func (e stillPending) Unwrap() []error { return []error{ErrStillPending, e.err} }
