package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
	"github.com/likeness-run/likeness/pkg/provider/sim"
)

// simCreates reads how many predictions the simulator accepted.
func simCreates(t *testing.T, base string) int64 {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(base, "/v1") + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st sim.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st.Creates
}

// TestSIGKILLDuringPredictionResumesIt kills a worker while its predictions
// run on the Replicate-protocol simulator: the worker that takes the tasks
// over resumes the predictions the dead one paid for, so the simulator sees
// one create per task.
func TestSIGKILLDuringPredictionResumesIt(t *testing.T) {
	t.Parallel()
	srv, err := sim.NewServer(sim.ServerConfig{Token: providertest.ReplicateToken, LatencyScale: 0.6, OutputSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	base := serveSimWith(t, srv)
	c := newCluster(t)
	env := append(c.env, "REPLICATE_API_TOKEN="+providertest.ReplicateToken, "LIKENESS_REPLICATE_BASE_URL="+base)
	const tasks = 4
	path := writeSpec(t, modelsSpec("resume", []string{"replicate:black-forest-labs/flux-kontext-pro"}, "variants: 4\n"))
	code, stdout, stderr := likeness(t, env, "submit", path)
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, stderr)
	}
	run := strings.TrimSpace(stdout)
	victim := start(t, env, "worker", "--concurrency", "8")
	for deadline := time.Now().Add(30 * time.Second); simCreates(t, base) < tasks; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the predictions were not all created:\n%s", victim.errOut())
		}
	}
	time.Sleep(200 * time.Millisecond) // the ids are recorded
	if st, _ := c.runs.Get(context.Background(), run); st.Done() > 0 {
		t.Fatalf("%d tasks ended before the kill; the predictions must still run", st.Done())
	}
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.wait(t, 10*time.Second)
	start(t, env, "worker", "--concurrency", "8")
	c.waitFinalized(t, run, 60*time.Second)
	recs := c.checkOnce(t, run, tasks)
	if n := simCreates(t, base); n != tasks {
		t.Errorf("the simulator created %d predictions for %d tasks; want one each (the redelivery resumes)", n, tasks)
	}
	for _, r := range recs {
		if r.Status != manifest.Succeeded || r.Attempts != 1 || r.ProviderRequestID == "" {
			t.Errorf("%s: %s after %d attempts (request %q); want succeeded after 1", r.Task, r.Status, r.Attempts, r.ProviderRequestID)
		}
	}
}
