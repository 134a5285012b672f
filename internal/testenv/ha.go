package testenv

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/pkg/redisconn"
)

// Environment variables for the Redis high-availability setups that
// scripts/test.sh starts (scripts/lib.sh, infra_up_redis_ha).
const (
	SentinelAddrsVar    = "LIKENESS_TEST_SENTINEL_ADDRS"    // host:port,... of three sentinels
	SentinelMasterVar   = "LIKENESS_TEST_SENTINEL_MASTER"   // the name they monitor
	SentinelPasswordVar = "LIKENESS_TEST_SENTINEL_PASSWORD" // of sentinels, master and replica
	ClusterAddrsVar     = "LIKENESS_TEST_CLUSTER_ADDRS"     // host:port,... of three cluster masters
)

// SentinelDatabases is how many databases the Sentinel set's servers have.
const SentinelDatabases = 32

// SentinelEnv is the test Sentinel set: a master, one replica and three
// sentinels, all requiring Password.
type SentinelEnv struct {
	Addrs    []string
	Master   string
	Password string
}

// Sentinel returns the test Sentinel set.
func Sentinel(t testing.TB) SentinelEnv {
	t.Helper()
	v := lookup(t, "Redis Sentinel set", SentinelAddrsVar, SentinelMasterVar, SentinelPasswordVar)
	return SentinelEnv{Addrs: strings.Split(v[0], ","), Master: v[1], Password: v[2]}
}

// URL is LIKENESS_REDIS_URL for database db behind the sentinels.
func (s SentinelEnv) URL(db int) string {
	return fmt.Sprintf("redis-sentinel://:%s@%s/%d?master=%s", s.Password, strings.Join(s.Addrs, ","), db, s.Master)
}

// Client is a client of the master, following failovers, on database db.
func (s SentinelEnv) Client(db int) *redis.Client {
	return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.Master, SentinelAddrs: s.Addrs,
		SentinelPassword: s.Password, Password: s.Password, DB: db})
}

// DB returns a database of the test's own on the master, empty, and
// flushed again when the test ends.
func (s SentinelEnv) DB(t testing.TB) int {
	t.Helper()
	ctx := context.Background()
	c := s.Client(0)
	defer c.Close()
	n, err := c.Incr(ctx, "likeness:test:nextdb").Result()
	if err != nil {
		t.Fatalf("allocate a Sentinel test database: %v", err)
	}
	db := 1 + int((n-1)%(SentinelDatabases-1))
	flush := func() {
		c := s.Client(db)
		defer c.Close()
		if err := c.FlushDB(ctx).Err(); err != nil {
			t.Errorf("flush Sentinel test database %d: %v", db, err)
		}
	}
	flush()
	t.Cleanup(flush)
	return db
}

func (s SentinelEnv) sentinel(addr string) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: addr, Password: s.Password})
}

// WaitReady waits until every sentinel agrees on the master, sees a
// replica in sync with it, and knows the two other sentinels: the state
// in which SENTINEL FAILOVER can promote the replica.
func (s SentinelEnv) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		err := s.ready(ctx)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Sentinel set not ready after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s SentinelEnv) ready(ctx context.Context) error {
	var master string
	for _, addr := range s.Addrs {
		sc := s.sentinel(addr)
		err := func() error {
			m, err := sc.Master(ctx, s.Master).Result()
			if err != nil {
				return fmt.Errorf("sentinel %s: %w", addr, err)
			}
			here := m["ip"] + ":" + m["port"]
			if master == "" {
				master = here
			} else if here != master {
				return fmt.Errorf("sentinels disagree on the master: %s and %s", master, here)
			}
			if strings.Contains(m["flags"], "down") || m["num-other-sentinels"] != "2" {
				return fmt.Errorf("sentinel %s: master flags %q, %s other sentinels", addr, m["flags"], m["num-other-sentinels"])
			}
			reps, err := sc.Replicas(ctx, s.Master).Result()
			if err != nil {
				return fmt.Errorf("sentinel %s: replicas: %w", addr, err)
			}
			if !slices.ContainsFunc(reps, func(r map[string]string) bool {
				return !strings.Contains(r["flags"], "down") && !strings.Contains(r["flags"], "disconnected") &&
					r["master-link-status"] == "ok"
			}) {
				return fmt.Errorf("sentinel %s sees no replica in sync: %v", addr, reps)
			}
			return nil
		}()
		sc.Close()
		if err != nil {
			return err
		}
	}
	// The master itself must stream to the replica.
	c := redis.NewClient(&redis.Options{Addr: master, Password: s.Password})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("master %s: %w", master, err)
	}
	if !strings.Contains(info, "role:master") || !strings.Contains(info, "state=online") {
		return fmt.Errorf("master %s replication: %s", master, info)
	}
	return nil
}

// Failover forces the sentinels to promote the replica (SENTINEL
// FAILOVER), and waits until the new master answers as one and every
// sentinel names it (redisconn.Failover). It returns the old and new
// master addresses. Call WaitReady first; the set is ready for another
// failover once WaitReady passes again.
func (s SentinelEnv) Failover(t testing.TB, timeout time.Duration) (from, to string) {
	t.Helper()
	o, err := redisconn.Parse(s.URL(0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	from, to, err = redisconn.Failover(ctx, o, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return from, to
}

// Cluster returns the seed addresses of the test Redis Cluster (three
// masters, no password). A cluster has one database: tests keep apart by
// key prefix, and only one test of the suite runs asynq queues on it.
func Cluster(t testing.TB) []string {
	t.Helper()
	return strings.Split(lookup(t, "Redis Cluster", ClusterAddrsVar)[0], ",")
}

// ClusterURL is LIKENESS_REDIS_URL for the test Redis Cluster.
func ClusterURL(t testing.TB) string {
	t.Helper()
	return "redis-cluster://" + strings.Join(Cluster(t), ",")
}
