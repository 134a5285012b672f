package bench

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSentinelResult(t *testing.T) {
	t.Parallel()
	ok := SentinelResult{
		LimitsResult: LimitsResult{Scenario: ScenarioSentinel, LimitRPM: 600, AchievedRatio: 0.956, ConcurrencyCap: 8, MaxInFlight: 8},
		FailoverS:    1.2, Tasks: 1200, Succeeded: 1200,
	}
	if err := ok.Check(); err != nil {
		t.Errorf("Check on a result that meets the targets: %v", err)
	}
	line, err := json.Marshal(ok)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"scenario":"sentinel"`, `"achieved_ratio":0.956`, `"over_limit_windows":0`, `"failover_s":1.2`, `"succeeded":1200`} {
		if !strings.Contains(string(line), key) {
			t.Errorf("JSON line %s lacks %s", line, key)
		}
	}
	tests := []struct {
		name string
		edit func(*SentinelResult)
		want string
	}{
		{"ratio", func(r *SentinelResult) { r.AchievedRatio = 0.94 }, "achieved_ratio 0.940 is below 0.95"},
		{"windows", func(r *SentinelResult) { r.OverLimitWindows = 3 }, "3 one-minute windows"},
		{"lost task", func(r *SentinelResult) { r.Succeeded = 1199 }, "1199 of 1200 tasks succeeded"},
	}
	for _, tc := range tests {
		r := ok
		tc.edit(&r)
		if err := r.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check = %v; want %q", tc.name, err, tc.want)
		}
	}
}
