package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/likeness-run/likeness/pkg/redisconn"
)

// ScenarioSentinel is the limits scenario on Redis behind Sentinel, with
// the master failed over (SENTINEL FAILOVER) once half the tasks are done.
// It needs a redis-sentinel:// LIKENESS_REDIS_URL (scripts/bench.sh
// sentinel starts a master, a replica and three sentinels).
const ScenarioSentinel = "sentinel"

// MinSentinelAchievedRatio is the least share of the rate limit the
// sentinel scenario must use across the failover: a little below the
// limits scenario's, for the seconds the fleet waits for the new master.
const MinSentinelAchievedRatio = 0.95

// SentinelResult is the JSON line of the sentinel scenario: the limits
// scenario's numbers, counted by the simulator across the failover, and
// the failover itself.
type SentinelResult struct {
	LimitsResult
	// FailoverS is the time from SENTINEL FAILOVER to every sentinel
	// naming the new master and the new master answering as one.
	FailoverS float64 `json:"failover_s"`
	// MasterBefore and MasterAfter are the master's addresses.
	MasterBefore string `json:"master_before"`
	MasterAfter  string `json:"master_after"`
	// Tasks and Succeeded count the run's tasks: none may be lost.
	Tasks     int `json:"tasks"`
	Succeeded int `json:"succeeded"`
}

// Check reports the targets the result misses: AchievedRatio at least
// MinSentinelAchievedRatio, no one-minute window over the limit, and every
// task succeeded.
func (r SentinelResult) Check() error {
	var errs []error
	if r.AchievedRatio < MinSentinelAchievedRatio {
		errs = append(errs, fmt.Errorf("achieved_ratio %.3f is below %.2f", r.AchievedRatio, MinSentinelAchievedRatio))
	}
	if r.OverLimitWindows != 0 {
		errs = append(errs, fmt.Errorf("%d one-minute windows held more than %d creates", r.OverLimitWindows, r.LimitRPM))
	}
	if r.Succeeded != r.Tasks {
		errs = append(errs, fmt.Errorf("%d of %d tasks succeeded", r.Succeeded, r.Tasks))
	}
	return errors.Join(errs...)
}

func runSentinel(ctx context.Context, e *env) (Result, error) {
	ropt, err := redisconn.Parse(e.redisURL)
	if err != nil || ropt.Mode != redisconn.Sentinel {
		return nil, fmt.Errorf("%w: the sentinel scenario needs a redis-sentinel:// LIKENESS_REDIS_URL (scripts/bench.sh sentinel starts one)", ErrConfig)
	}
	var res SentinelResult
	failover := func(ctx context.Context) error {
		e.progressf("half the tasks done: SENTINEL FAILOVER %s", ropt.MasterName)
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		start := time.Now()
		from, to, err := redisconn.Failover(fctx, ropt, 20*time.Millisecond)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInfra, err)
		}
		res.FailoverS = round3(time.Since(start).Seconds())
		res.MasterBefore, res.MasterAfter = from, to
		e.progressf("master %s -> %s in %.3fs", from, to, res.FailoverS)
		return nil
	}
	lr, st, err := limits(ctx, e, failover)
	if err != nil {
		return nil, err
	}
	res.LimitsResult = lr
	res.Scenario = ScenarioSentinel
	res.Tasks, res.Succeeded = st.Total, st.Succeeded
	return res, nil
}
