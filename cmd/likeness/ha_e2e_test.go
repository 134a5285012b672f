package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
)

// TestSentinelFailoverEndToEnd is the distributed run on a Redis Sentinel
// set, with the sentinels made to promote the replica while workers are in
// the middle of it: the run completes with every task recorded exactly
// once, the workers stop cleanly, and the password in LIKENESS_REDIS_URL
// appears in nothing they print.
func TestSentinelFailoverEndToEnd(t *testing.T) {
	t.Parallel()
	sen := testenv.Sentinel(t)
	sen.WaitReady(t, 30*time.Second)
	c := newClusterOn(t, sen.URL(sen.DB(t)))
	c.env = append(c.env, "LIKENESS_LOG_LEVEL=debug")
	specPath := writeSpec(t, distSpec(fmt.Sprintf("sentinel-%d", time.Now().UnixNano()), 400))
	code, stdout, stderr := likeness(t, c.env, "submit", specPath)
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, stderr)
	}
	run := strings.TrimSpace(stdout)
	workers := []*proc{
		start(t, c.env, "worker", "--concurrency", "3"),
		start(t, c.env, "worker", "--concurrency", "3"),
	}
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := c.runs.Get(context.Background(), run)
		if err == nil && st.Done() >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workers finished nothing in a minute")
		}
		time.Sleep(20 * time.Millisecond)
	}
	from, to := sen.Failover(t, 30*time.Second)
	t.Logf("failover: master %s -> %s", from, to)
	st, err := c.runs.Get(context.Background(), run)
	if err != nil {
		t.Fatalf("run state after the failover: %v", err)
	}
	if st.Done() >= 24 {
		t.Fatalf("the run finished before the failover completed; nothing was in flight across it")
	}
	// Writes the old master acknowledged after the promotion are lost
	// (replication is asynchronous): asynq re-runs the tasks whose dequeue
	// or acknowledgement went with them once their lease expires (30 s,
	// then its recoverer's next minute tick), and run state counts them once.
	st = c.waitFinalized(t, run, 3*time.Minute)
	if st.Succeeded != 24 {
		t.Errorf("status: %d succeeded; want 24", st.Succeeded)
	}
	c.checkOnce(t, run, 24)
	for i, w := range workers {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		if code := w.wait(t, time.Minute); code != 0 {
			t.Errorf("worker %d exited %d after SIGTERM", i+1, code)
		}
		if out := w.out() + w.errOut(); strings.Contains(out, sen.Password) {
			t.Errorf("worker %d printed the Redis password", i+1)
		}
	}
	// The set is left ready for another failover.
	sen.WaitReady(t, 30*time.Second)
}

// TestClusterEndToEnd is the distributed run on a three-master Redis
// Cluster: asynq's queues and likeness's run state and limits spread over
// the masters, every script keeps its keys in one slot, and the run
// completes with every task recorded once.
func TestClusterEndToEnd(t *testing.T) {
	t.Parallel()
	c := newClusterOn(t, testenv.ClusterURL(t))
	specPath := writeSpec(t, distSpec(fmt.Sprintf("cluster-%d", time.Now().UnixNano()), 150))
	code, stdout, stderr := likeness(t, c.env, "submit", specPath)
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, stderr)
	}
	run := strings.TrimSpace(stdout)
	w1 := start(t, c.env, "worker", "--concurrency", "4")
	w2 := start(t, c.env, "worker", "--concurrency", "4")
	st := c.waitFinalized(t, run, 2*time.Minute)
	if st.Succeeded != 24 {
		t.Errorf("status: %d succeeded; want 24", st.Succeeded)
	}
	recs := c.checkOnce(t, run, 24)
	workers := map[string]int{}
	for _, r := range recs {
		workers[r.Worker]++
	}
	if len(workers) != 2 {
		t.Errorf("tasks by worker: %v; want both workers to take part", workers)
	}
	stopGracefully(t, w1, w2)
	code, stdout, stderr = likeness(t, c.env, "submit", specPath)
	if code != 0 || strings.TrimSpace(stdout) != run || !strings.Contains(stderr, "nothing new enqueued") {
		t.Errorf("resubmit: exit %d, run %q (want %q)\n%s", code, stdout, run, stderr)
	}
	if code, stdout, _ := likeness(t, c.env, "status", run); code != 0 || !strings.Contains(stdout, "24") {
		t.Errorf("status: exit %d\n%s", code, stdout)
	}
	// The data really is spread: more than one master holds keys.
	cc, ok := c.rdb.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("client is %T, not a cluster client", c.rdb)
	}
	var (
		mu      sync.Mutex
		holding []string
	)
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		n, err := m.DBSize(ctx).Result()
		if n > 0 {
			mu.Lock()
			holding = append(holding, m.Options().Addr)
			mu.Unlock()
		}
		return err
	})
	if err != nil || len(holding) < 2 {
		t.Errorf("masters holding keys: %v, %v; want at least 2 of 3", holding, err)
	}
}

// TestRedisPasswordNeverPrinted points likeness at Redis URLs of each form
// that carry a password and cannot work (nothing listens, or the URL is
// malformed): it exits 3 or 2 with a message naming the Redis, and the
// password appears nowhere in what it prints.
func TestRedisPasswordNeverPrinted(t *testing.T) {
	t.Parallel()
	const pw = "n0t-In-LoGs-9412"
	specPath := writeSpec(t, distSpec("redact", 10))
	tests := []struct {
		url  string
		code int
		want string
	}{
		{"redis-sentinel://:" + pw + "@127.0.0.1:1,127.0.0.1:2/3?master=mymaster", exitInfra, "redis redis-sentinel://xxxxx@127.0.0.1:1,127.0.0.1:2/3?master=mymaster does not answer"},
		{"redis-cluster://:" + pw + "@127.0.0.1:1,127.0.0.1:2", exitInfra, "redis redis-cluster://xxxxx@127.0.0.1:1,127.0.0.1:2 does not answer"},
		{"redis://user:" + pw + "@127.0.0.1:1/0", exitInfra, "redis redis://xxxxx@127.0.0.1:1/0 does not answer"},
		{"redis-sentinel://:" + pw + "@127.0.0.1:1,127.0.0.1", exitInput, `LIKENESS_REDIS_URL: address "127.0.0.1"`},
		{"redis-sentinel://:" + pw + "@127.0.0.1:1", exitInput, "?master=NAME"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := likeness(t, []string{"LIKENESS_REDIS_URL=" + tc.url, "LIKENESS_LOG_LEVEL=debug",
				"LIKENESS_S3_ENDPOINT=127.0.0.1:1"}, "submit", specPath)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d; want %d and a message with %q\n%s", code, tc.code, tc.want, stderr)
			}
			if strings.Contains(stdout+stderr, pw) {
				t.Errorf("the password was printed:\n%s%s", stdout, stderr)
			}
		})
	}
}
