package main

import (
	"encoding/json"
	"fmt"
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
