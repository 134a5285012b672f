package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/likeness-run/likeness/internal/testenv"
)

// TestBenchScenariosSmall runs every `likeness bench` scenario at a small
// scale against the real Redis and MinIO: the harness works end to end (it
// starts the simulator and the worker processes, counts, and prints one
// JSON line). The targets are for full scale (scripts/bench.sh); here the
// exit status may be 1 for a missed target, but never for a broken run,
// and the measures that do not depend on scale must hold.
func TestBenchScenariosSmall(t *testing.T) {
	addr, first := testenv.RedisDBs(t, 3)
	s3env := testenv.S3(t)
	env := []string{
		"LIKENESS_REDIS_URL=redis://" + addr,
		"LIKENESS_S3_ENDPOINT=" + s3env.Endpoint,
		"LIKENESS_S3_ACCESS_KEY=" + s3env.AccessKey,
		"LIKENESS_S3_SECRET_KEY=" + s3env.SecretKey,
		"LIKENESS_S3_BUCKET=benchtest",
	}
	bench := func(t *testing.T, args ...string) map[string]any {
		t.Helper()
		args = append([]string{"bench"}, append(args, fmt.Sprintf("--redis-db=%d", first), "--dir", t.TempDir())...)
		p := start(t, env, args...)
		code := p.wait(t, 3*time.Minute)
		if code != 0 && code != 1 {
			t.Fatalf("likeness %s: exit %d\n%s", strings.Join(args, " "), code, p.errOut())
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(p.out()), &res); err != nil {
			t.Fatalf("stdout is not one JSON line: %v\n%s\nstderr:\n%s", err, p.out(), p.errOut())
		}
		if code == 1 && !strings.Contains(p.errOut(), "missed its targets") {
			t.Fatalf("exit 1 without a missed target:\n%s", p.errOut())
		}
		return res
	}
	// Sequential: each scenario wants the machine to itself.
	t.Run("limits", func(t *testing.T) {
		res := bench(t, "limits", "--tasks=40", "--workers=2")
		if res["over_limit_windows"] != 0.0 || res["max_in_flight"].(float64) > res["concurrency_cap"].(float64) {
			t.Errorf("the fleet exceeded the limits: %v", res)
		}
	})
	t.Run("makespan", func(t *testing.T) {
		res := bench(t, "makespan", "--tasks=40", "--workers=2")
		if res["succeeded"] != res["tasks"] || res["tasks"].(float64) < 40 {
			t.Errorf("not every task succeeded: %v", res)
		}
	})
	t.Run("overhead traced", func(t *testing.T) {
		res := bench(t, "overhead", "--tasks=200", "--tracing")
		for _, k := range []string{"tasks_per_s", "raw_asynq_tasks_per_s", "traced_tasks_per_s", "tracing_ratio"} {
			if v, _ := res[k].(float64); v <= 0 {
				t.Errorf("%s = %v, want a measure above 0: %v", k, res[k], res)
			}
		}
	})
}

// chaosBinaries returns the redis-server and MinIO the chaos scenario
// needs, skipping the test without them (failing under scripts/test.sh).
func chaosBinaries(t *testing.T) (redisServer, minio string) {
	t.Helper()
	redisServer, err := exec.LookPath("redis-server")
	if err == nil {
		minio, err = exec.LookPath(cachedMinIO(os.Getenv))
	}
	if err != nil {
		if testenv.RequireInfra() {
			t.Fatalf("the chaos scenario needs redis-server and the cached MinIO: %v", err)
		}
		t.Skipf("redis-server or MinIO missing: %v (scripts/test.sh installs both)", err)
	}
	return redisServer, minio
}

var (
	chaosInfraLine = regexp.MustCompile(`own redis on (127\.0\.0\.1:\d+) .* and minio on (127\.0\.0\.1:\d+) up`)
	chaosSimLine   = regexp.MustCompile(`sim-provider serving on http://(127\.0\.0\.1:\d+)`)
)

// chaosAddrs returns the addresses of the servers a chaos run started, as
// its progress reports them.
func chaosAddrs(t *testing.T, stderr string) []string {
	t.Helper()
	infra, sim := chaosInfraLine.FindStringSubmatch(stderr), chaosSimLine.FindStringSubmatch(stderr)
	if infra == nil || sim == nil {
		t.Fatalf("no server addresses in the progress:\n%s", stderr)
	}
	return []string{infra[1], infra[2], sim[1]}
}

// assertStopped fails when anything still listens on addrs.
func assertStopped(t *testing.T, addrs []string) {
	t.Helper()
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still answers after the bench exited", a)
		}
	}
}

// TestBenchChaosSmall runs the chaos scenario at a tenth of its time scale
// on a few tasks: its own Redis and MinIO start, a worker is killed and
// replaced every 0.9 s, Redis is killed and restarted from its AOF, MinIO
// stopped and started, the provider taken down; the audit runs and one
// JSON line comes out; and every process it started is gone when it
// exits, also when interrupted. Whether the run meets the targets is for
// full scale (scripts/bench.sh chaos); what must hold at any scale is
// asserted here.
func TestBenchChaosSmall(t *testing.T) {
	redisServer, minio := chaosBinaries(t)
	env := []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT=", "LIKENESS_S3_BUCKET=chaostest"}
	args := []string{"bench", "chaos", "--tasks=25", "--time-scale=0.1", "--timeout=12s",
		"--redis-server", redisServer, "--minio", minio, "--dir", t.TempDir()}

	t.Run("run", func(t *testing.T) {
		p := start(t, env, args...)
		code := p.wait(t, 2*time.Minute)
		if code != 0 && code != 1 {
			t.Fatalf("exit %d\n%s", code, p.errOut())
		}
		if code == 1 && !strings.Contains(p.errOut(), "missed its targets") {
			t.Fatalf("exit 1 without a missed target:\n%s", p.errOut())
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(p.out()), &res); err != nil {
			t.Fatalf("stdout is not one JSON line: %v\n%s\nstderr:\n%s", err, p.out(), p.errOut())
		}
		for _, k := range []string{"scenario", "tasks", "succeeded", "failed", "unique_records", "duplicate_records", "missing_outputs",
			"paid_predictions_per_task", "makespan_s", "bound_s", "outage_s", "worker_kills"} {
			if _, ok := res[k]; !ok {
				t.Errorf("the JSON line lacks %s: %s", k, p.out())
			}
		}
		num := func(k string) float64 { v, _ := res[k].(float64); return v }
		if res["scenario"] != "chaos" || num("tasks") != 25 || num("worker_kills") < 1 || num("bound_s") <= 0 {
			t.Errorf("scenario, tasks, worker_kills, bound_s: %s", p.out())
		}
		// At any scale: nothing counted twice, every stored success readable,
		// every terminal count backed by a record.
		if num("duplicate_records") != 0 || num("missing_outputs") != 0 || num("unique_records") < num("succeeded")+num("failed") {
			t.Errorf("records: %s\n%s", p.out(), p.errOut())
		}
		stderr := p.errOut()
		if num("makespan_s") > 2.5 {
			for _, want := range []string{"redis SIGKILLed", "restarted on its append-only file", "SIGKILLed and replaced"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("no %q in the progress:\n%s", want, stderr)
				}
			}
			if num("outage_s") < 0.3 {
				t.Errorf("outage_s %v: Redis alone was down 0.3 s", res["outage_s"])
			}
		}
		assertStopped(t, chaosAddrs(t, stderr))
	})

	t.Run("interrupted", func(t *testing.T) {
		p := start(t, env, args...)
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(p.errOut(), "submitted run") {
			select {
			case <-p.done:
				t.Fatalf("the bench ended before submitting:\n%s", p.errOut())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no submit within a minute:\n%s", p.errOut())
			}
			time.Sleep(50 * time.Millisecond)
		}
		addrs := chaosAddrs(t, p.errOut())
		if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, time.Minute); code == 0 {
			t.Errorf("exit 0 after an interrupt:\n%s", p.errOut())
		}
		assertStopped(t, addrs)
	})
}
