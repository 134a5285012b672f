package dashboard

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/likeness-run/likeness/pkg/manifest"
)

func TestFailureGroupsIgnoreRequestIDs(t *testing.T) {
	t.Parallel()
	fail := func(task, class, msg string) manifest.Record {
		return manifest.Record{Task: task, Status: manifest.Failed, ErrorClass: class, Error: msg}
	}
	recs := []manifest.Record{
		fail("a", "safety", "sim safety [sim_safety]: output flagged (safety_rate 0.6); try another seed (request sim-0317a5b9c315dedd)"),
		fail("b", "safety", "sim safety [sim_safety]: output flagged (safety_rate 0.6); try another seed (request sim-feba949e8603e653)"),
		fail("c", "transient", "replicate 503: prediction 4f9c2b7e-8a1d-4c3e-9b2a-1f0e7d6c5b4a failed"),
		{Task: "d", Status: manifest.SkippedCanceled, Error: "run canceled"},
		{Task: "e", Status: manifest.Succeeded},
	}
	want := []FailureGroup{
		{Class: "safety", Count: 2, Messages: []FailureMessage{{Message: "sim safety [sim_safety]: output flagged (safety_rate 0.6); try another seed", Count: 2, Tasks: []string{"a", "b"}}}},
		{Class: "skipped_canceled", Count: 1, Messages: []FailureMessage{{Message: "run canceled", Count: 1, Tasks: []string{"d"}}}},
		{Class: "transient", Count: 1, Messages: []FailureMessage{{Message: "replicate 503: prediction … failed", Count: 1, Tasks: []string{"c"}}}},
	}
	if diff := cmp.Diff(want, failureGroups(recs)); diff != "" {
		t.Errorf("failure groups (-want +got):\n%s", diff)
	}
}
