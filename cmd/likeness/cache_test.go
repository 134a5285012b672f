package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestCacheReindexCommand: a run's outputs, their index entries lost from
// Redis (the built mark kept, so no worker rebuilds by itself), come back
// with `likeness cache reindex`: the same requests in another run are then
// served from the bucket, calling no provider and costing nothing.
func TestCacheReindexCommand(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	ctx := context.Background()
	code, stdout, stderr := likeness(t, c.env, "submit", writeSpec(t, distSpec("first", 0)))
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, stderr)
	}
	w := start(t, c.env, "worker", "--concurrency", "4")
	c.waitFinalized(t, strings.TrimSpace(stdout), time.Minute)
	stopGracefully(t, w)

	var lost int
	iter := c.rdb.Scan(ctx, 0, "likeness:cache:*", 1000).Iterator()
	for iter.Next(ctx) {
		if iter.Val() == "likeness:cache:ready" {
			continue
		}
		if err := c.rdb.Del(ctx, iter.Val()).Err(); err != nil {
			t.Fatal(err)
		}
		lost++
	}
	if err := iter.Err(); err != nil || lost == 0 {
		t.Fatalf("cache index shards removed: %d, %v; want some", lost, err)
	}

	code, stdout, stderr = likeness(t, c.env, "cache", "reindex")
	if code != 0 || !strings.Contains(stdout, "24 outputs from 1 runs") {
		t.Fatalf("cache reindex: exit %d, %q\n%s", code, stdout, stderr)
	}

	code, stdout, stderr = likeness(t, c.env, "submit", writeSpec(t, distSpec("second", 0)))
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, stderr)
	}
	w = start(t, c.env, "worker", "--concurrency", "4")
	st := c.waitFinalized(t, strings.TrimSpace(stdout), time.Minute)
	stopGracefully(t, w)
	if st.Succeeded != 24 || st.Cached != 24 || st.CostUSD != 0 {
		t.Errorf("second run: %d succeeded, %d from the cache, $%.2f; want 24, 24, $0", st.Succeeded, st.Cached, st.CostUSD)
	}
}
