package redisconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Failover makes the sentinels promote a replica of o's master (SENTINEL
// FAILOVER, asked of the first sentinel that answers) and waits until
// every sentinel names the new master and it answers as one. It returns
// the old and the new master's addresses. ctx bounds the wait; while a
// previous failover settles the sentinels refuse (INPROG, NOGOODSLAVE),
// and Failover asks again every poll.
//
// It is for drills: the sentinel benchmark and the tests fail Redis over
// in the middle of a run to show the run survives.
func Failover(ctx context.Context, o Options, poll time.Duration) (from, to string, err error) {
	if o.Mode != Sentinel {
		return "", "", fmt.Errorf("failover needs a redis-sentinel:// URL, not %s", o.Mode)
	}
	if poll <= 0 {
		poll = 50 * time.Millisecond
	}
	sentinels := make([]*redis.SentinelClient, len(o.Addrs))
	for i, a := range o.Addrs {
		sentinels[i] = redis.NewSentinelClient(&redis.Options{Addr: a, Username: o.Username, Password: o.Password, TLSConfig: o.TLS})
		defer sentinels[i].Close()
	}
	master := func(sc *redis.SentinelClient) (string, error) {
		a, err := sc.GetMasterAddrByName(ctx, o.MasterName).Result()
		if err != nil {
			return "", err
		}
		return a[0] + ":" + a[1], nil
	}
	wait := func(last error) error {
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), last)
		case <-time.After(poll):
			return nil
		}
	}
	// Ask until one sentinel accepts.
	for asked := false; !asked; {
		var last error
		for i, sc := range sentinels {
			if from, last = master(sc); last != nil {
				last = fmt.Errorf("sentinel %s: %w", o.Addrs[i], last)
				continue
			}
			if last = sc.Failover(ctx, o.MasterName).Err(); last == nil {
				asked = true
				break
			}
			last = fmt.Errorf("sentinel %s: SENTINEL FAILOVER %s: %w", o.Addrs[i], o.MasterName, last)
		}
		if !asked {
			if err := wait(last); err != nil {
				return "", "", err
			}
		}
	}
	for {
		to, err = switched(ctx, o, sentinels, master, from)
		if err == nil {
			return from, to, nil
		}
		if err := wait(err); err != nil {
			return from, "", fmt.Errorf("failover from %s: %w", from, err)
		}
	}
}

// switched returns the new master once every sentinel names the same one,
// other than from, and it answers as a master.
func switched(ctx context.Context, o Options, sentinels []*redis.SentinelClient, master func(*redis.SentinelClient) (string, error), from string) (string, error) {
	var to string
	for i, sc := range sentinels {
		here, err := master(sc)
		if err != nil {
			return "", fmt.Errorf("sentinel %s: %w", o.Addrs[i], err)
		}
		if here == from || (to != "" && here != to) {
			return "", fmt.Errorf("sentinel %s still names %s", o.Addrs[i], here)
		}
		to = here
	}
	c := redis.NewClient(&redis.Options{Addr: to, Username: o.Username, Password: o.Password, TLSConfig: o.TLS})
	defer c.Close()
	role, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 || role[0] != "master" {
		return "", fmt.Errorf("%s is not a master yet: %v %v", to, role, err)
	}
	return to, nil
}
