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
}

func (e *waitError) Error() string {
	return fmt.Sprintf("requeued for %s: %v", e.Wait.Round(time.Millisecond), e.Err)
}

func (e *waitError) Unwrap() error { return e.Err }

// isFailure tells asynq which errors spend a retry. Waits do not.
func isFailure(err error) bool {
	var we *waitError
	return !errors.As(err, &we)
}

// retryDelay is asynq's RetryDelayFunc: the exact wait for waitErrors, a
// short pause for tasks recovered from a dead worker, and exponential
// backoff with full jitter for everything else. asynq schedules retries with
// whole-second precision, so waits are rounded up to never come back early.
func (w *Worker) retryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var we *waitError
	switch {
	case errors.As(err, &we):
		return ceilSecond(we.Wait)
	case errors.Is(err, asynq.ErrLeaseExpired):
		return time.Second
	}
	return backoff(n, w.cfg.BackoffBase, w.cfg.BackoffCap, rand.Float64)
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
