package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

// limitFor returns the fleet-wide limit in force for a model.
func (w *Worker) limitFor(m provider.Model) ratelimit.Limit { return ratelimit.For(m, w.cfg.Limits) }

// acquire takes the model's fleet-wide limits. Short waits are waited here;
// a wait longer than MaxInlineWait requeues the task for exactly that long,
// without spending a retry. It returns the lease (nil when no limiter is
// configured) and the time spent waiting.
func (w *Worker) acquire(ctx context.Context, lim ratelimit.Limit, holder string) (lease *ratelimit.Lease, waited time.Duration, err error) {
	if w.cfg.Limiter == nil {
		return nil, 0, nil
	}
	ctx, span := telemetry.Start(ctx, telemetry.SpanLimitWait, attribute.String("likeness.limit", lim.Key))
	var reason ratelimit.Reason
	defer func() {
		if waited > 0 {
			w.cfg.Telemetry.Metrics().LimitWait(ctx, lim.Key, string(reason), waited)
		}
		var we *waitError
		if errors.As(err, &we) {
			telemetry.End(span, nil) // a requeue is not an error
			return
		}
		telemetry.End(span, err)
	}()
	start := time.Now()
	deadline := start.Add(w.cfg.MaxInlineWait)
	for {
		lease, wait, err := w.cfg.Limiter.Acquire(ctx, lim, holder)
		if err != nil {
			return nil, time.Since(start), err
		}
		if wait == nil {
			return lease, time.Since(start), nil
		}
		reason = wait.Reason
		if time.Now().Add(wait.For).After(deadline) {
			return nil, time.Since(start), &waitError{Wait: wait.For,
				Err: fmt.Errorf("fleet limit %s: %s", lim.Key, wait.Reason)}
		}
		t := time.NewTimer(wait.For)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, time.Since(start), ctx.Err()
		case <-t.C:
		}
	}
}

// A 429 asking for at most burstThrottle, with fewer than throttleBurst
// 429s for the same limit within throttleWindow, is a burst throttle: the
// task that got it waits exactly what the provider asked (it is requeued),
// the rest of the fleet goes on. A longer wait, or 429s piling up, means the
// fleet is at the provider's limit: every worker then waits until the
// cooldown ends. (At the limit every request is refused, so the pile-up
// takes a fraction of a second at any useful request rate.) Five, not
// three: a provider that throttles 3% of requests at random (Replicate
// does) sends three within 3 s at 10 requests/s about once every 15 s,
// which stopped the whole fleet each time; five, once in 20 minutes.
const (
	burstThrottle  = time.Second
	throttleWindow = 3 * time.Second
	throttleBurst  = 5
)

// report tells the fleet-wide limits what the provider answered: a RATE
// answer sets the cooldown every worker honours (see burstThrottle),
// TRANSIENT failures feed the circuit breaker, a success closes it.
func (w *Worker) report(ctx context.Context, lim ratelimit.Limit, err error) {
	if w.cfg.Limiter == nil {
		return
	}
	var rerr error
	switch provider.ClassOf(err) {
	case "":
		rerr = w.cfg.Limiter.ReportSuccess(ctx, lim.Key)
	case provider.Rate:
		d := provider.RetryAfterOf(err)
		if d <= 0 {
			d = time.Second // no hint
		}
		var n int
		if n, rerr = w.cfg.Limiter.NoteThrottle(ctx, lim.Key, throttleWindow); rerr == nil && (d > burstThrottle || n >= throttleBurst) {
			rerr = w.cfg.Limiter.SetCooldown(ctx, lim.Key, time.Now().Add(d))
		}
	case provider.Transient:
		var open bool
		open, rerr = w.cfg.Limiter.ReportTransient(ctx, lim.Key, lim.Breaker)
		if open {
			w.log.WarnContext(ctx, "circuit opened after repeated transient failures", "limit", lim.Key)
		}
	}
	if rerr != nil {
		w.log.WarnContext(ctx, "update fleet limits", "limit", lim.Key, "err", rerr)
	}
}
