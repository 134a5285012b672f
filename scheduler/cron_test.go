package scheduler_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/scheduler"
)

func TestParseCronFile(t *testing.T) {
	t.Parallel()
	good := `entries:
  - name: nightly
    schedule: "0 2 * * *"
    spec: specs/sheet.yaml
  - schedule: "@every 6h"
    spec: /abs/other.yaml
`
	got, err := scheduler.ParseCronFile("conf/cron.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := []scheduler.CronEntry{
		{Name: "nightly", Schedule: "0 2 * * *", Spec: filepath.Join("conf", "specs", "sheet.yaml"), Line: 2},
		{Name: "/abs/other.yaml", Schedule: "@every 6h", Spec: "/abs/other.yaml", Line: 5},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}

	bad := `entries:
  - schedule: "0 25 * * *"
    spec: a.yaml
  - schedule: "@daily"
  - {schedule: "@hourly", spec: b.yaml, when: now}
`
	_, err = scheduler.ParseCronFile("cron.yaml", []byte(bad))
	if err == nil {
		t.Fatal("bad cron file accepted")
	}
	for _, w := range []string{
		`cron.yaml:2: entries[0].schedule: "0 25 * * *": end of range (25) above maximum (23)`,
		"cron.yaml:4: entries[1].spec: required",
		"cron.yaml:5: entries[2].when: unknown field (allowed: name, schedule, spec)",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\nwant it to contain %q", err, w)
		}
	}
	if _, err := scheduler.ParseCronFile("cron.yaml", []byte("entries: []\n")); err == nil || !strings.Contains(err.Error(), "no entries") {
		t.Errorf("empty cron file: %v", err)
	}
}

// TestExampleCronFile: the example parses and names a spec that exists.
func TestExampleCronFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join("..", "examples", "schedules", "cron.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := scheduler.ParseCronFile(path, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, err := spec.LoadFile(e.Spec, nil); err != nil {
			t.Errorf("entry %s: %v", e.Name, err)
		}
	}
}

// TestCronSubmitsOnSchedule: an entry fires at its schedule, again and
// again, with its spec's path, and Run returns when its context ends.
func TestCronSubmitsOnSchedule(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var paths []string
	fired := make(chan struct{}, 10)
	c, err := scheduler.NewCron([]scheduler.CronEntry{{Name: "e", Schedule: "@every 1s", Spec: "s.yaml"}},
		func(_ context.Context, path string) (*scheduler.Submission, error) {
			mu.Lock()
			paths = append(paths, path)
			mu.Unlock()
			fired <- struct{}{}
			return &scheduler.Submission{RunID: "r", Existing: len(paths) > 1}, nil
		}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	for range 2 {
		select {
		case <-fired:
		case <-time.After(10 * time.Second):
			t.Fatal("the entry did not fire twice within 10s")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if paths[0] != "s.yaml" || paths[1] != "s.yaml" {
		t.Errorf("submitted %v", paths)
	}
	if _, err := scheduler.NewCron([]scheduler.CronEntry{{Schedule: "every day"}}, nil, nil); err == nil {
		t.Error("NewCron accepted a bad schedule")
	}
}
