package worker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/likeness-run/likeness/pkg/provider"
)

// waitError asks the queue to run the task again after exactly Wait,
// without counting the attempt as a failure: a provider's RATE answer, or a
// fleet-wide limit that is not available yet.
type waitError struct {
	Wait time.Duration
	Err  error
	// requeue: the wait is a poll (a paused run, a task another delivery
	// works), so the task goes back to the queue and frees its slot,
	// however short the wait.
	requeue bool
}

func (e *waitError) Error() string {
	return fmt.Sprintf("requeued for %s: %v", e.Wait.Round(time.Millisecond), e.Err)
}

func (e *waitError) Unwrap() error { return e.Err }

// attemptError is a provider attempt that failed and will be retried
// (TRANSIENT, SAFETY, a bad output): the only errors that count as a
// task's failures in the queue. How many a task may have is decided from
// its attempt history in Redis, never from the queue's retry counter.
type attemptError struct{ Err error }

func (e *attemptError) Error() string { return e.Err.Error() }
func (e *attemptError) Unwrap() error { return e.Err }

// infraError is a fault of likeness's own infrastructure (Redis, the
// object store, the queue, a deadline, a dead worker): retried with capped
// backoff, never counted against the task, for as long as the run's
// infra_retry_for allows. For is how long such faults have been failing
// the task.
type infraError struct {
	Err error
	For time.Duration
}

func (e *infraError) Error() string { return "infrastructure: " + e.Err.Error() }
func (e *infraError) Unwrap() error { return e.Err }

// isFailure tells asynq which errors spend a retry: only provider
// attempts. Waits and infrastructure faults do not.
func isFailure(err error) bool {
	var ae *attemptError
	return errors.As(err, &ae)
}

// retryDelay is asynq's RetryDelayFunc: the exact wait for waitErrors, a
// pause growing with the outage (from about a second, capped) for
// infrastructure faults and tasks recovered from a dead worker, and
// exponential backoff with full jitter for failed attempts. asynq schedules
// retries with whole-second precision, so waits are rounded up to never
// come back early.
func (w *Worker) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var we *waitError
	var ie *infraError
	var ae *attemptError
	switch {
	case errors.As(err, &we):
		return ceilSecond(we.Wait)
	case errors.As(err, &ae):
		return backoff(n, w.cfg.BackoffBase, w.cfg.BackoffCap, rand.Float64)
	case errors.As(err, &ie):
		return infraBackoff(ie.For, w.cfg.InfraBackoffCap, rand.Float64)
	}
	return time.Second // a dead worker's task (asynq.ErrLeaseExpired), a finalize
}

// infraBackoff is the pause before retrying a task infrastructure has been
// failing for d: an eighth of the outage so far, between one second and
// limit, with jitter, so a short blip costs a second, a 20 s bucket outage
// about three, and a long outage is not hammered.
func infraBackoff(d, limit time.Duration, random func() float64) time.Duration {
	base := min(max(d/8, time.Second), limit)
	return base + time.Duration(random()*float64(base)/4)
}

// backoff returns a full-jitter exponential delay: uniform in
// [base/2, min(cap, base*2^n)].
func backoff(n int, base, limit time.Duration, random func() float64) time.Duration {
	d := base
	for i := 0; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	floor := base / 2
	return floor + time.Duration(random()*float64(d-floor))
}

func ceilSecond(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return max(d, time.Second)
}

// outcome is what the handler decides after a failed attempt.
type outcome int

const (
	retrySame    outcome = iota // transient: same seed, after backoff
	retryNewSeed                // safety or bad output: next derived seed
	requeueWait                 // rate: after the provider's wait, not a failure
	terminal                    // no more attempts
)

// decide maps an attempt's failure class onto what happens next, given the
// attempts already spent in each budget.
func decide(class provider.Class, transientSpent, outputSpent, maxAttempts, outputRetries int) outcome {
	switch class {
	case provider.Rate:
		return requeueWait
	case provider.Input, provider.Billing:
		return terminal
	case provider.Safety, provider.BadOutput:
		if outputSpent > outputRetries {
			return terminal
		}
		return retryNewSeed
	default:
		if transientSpent >= maxAttempts {
			return terminal
		}
		return retrySame
	}
}
