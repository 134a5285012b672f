package runstate_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
)

func TestPauseResume(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, runstate.Run{ID: "p", Total: 2, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Paused(ctx, "p"); err != nil || p {
		t.Fatalf("new run paused = %v, %v; want false", p, err)
	}
	if err := s.Pause(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.Paused(ctx, "p"); !p {
		t.Error("Paused = false after Pause")
	}
	// Workers see it in the task state; the run's other state is untouched.
	if ts, err := s.Task(ctx, "p", "t1", "sim"); err != nil || !ts.Paused {
		t.Errorf("Task after Pause: %+v, %v; want paused", ts, err)
	}
	if st, err := s.Get(ctx, "p"); err != nil || !st.Paused || st.State != runstate.Running || st.Total != 2 {
		t.Errorf("Get after Pause: %+v, %v", st, err)
	}
	if err := s.Resume(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if p, err := s.Paused(ctx, "p"); err != nil || p {
		t.Errorf("after Resume: paused %v, %v; want not paused", p, err)
	}
	for _, op := range []func(context.Context, string) error{s.Pause, s.Resume} {
		if err := op(ctx, "nope"); !errors.Is(err, runstate.ErrNotFound) {
			t.Errorf("pause/resume of an unknown run: %v; want ErrNotFound", err)
		}
	}
	if _, err := s.Get(ctx, "nope"); !errors.Is(err, runstate.ErrNotFound) {
		t.Errorf("Pause of an unknown run created it: %v", err)
	}
}

func TestFinishedTasks(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, runstate.Run{ID: "f", Total: 3, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{"a", "b", "b"} {
		if _, err := s.Complete(ctx, "f", task, manifest.Failed, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Reopen(ctx, "f", "a", nil); err != nil {
		t.Fatal(err)
	}
	ids, err := s.FinishedTasks(ctx, "f")
	if err != nil || len(ids) != 1 || ids[0] != "b" {
		t.Errorf("FinishedTasks = %v, %v; want [b]", ids, err)
	}
	if ids, err := s.FinishedTasks(ctx, "nope"); err != nil || len(ids) != 0 {
		t.Errorf("FinishedTasks of an unknown run = %v, %v", ids, err)
	}
}

func TestSetBudgetOnlyRaises(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, err := s.Create(ctx, runstate.Run{ID: "b", Total: 10, BudgetUSD: 0.10, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, runstate.Run{ID: "free", Total: 10, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	budget := func(run string) float64 {
		st, err := s.Get(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		return st.BudgetUSD
	}
	for _, usd := range []float64{0.05, 0.10, -1} {
		if err := s.SetBudget(ctx, "b", usd); !errors.Is(err, runstate.ErrBudget) {
			t.Errorf("SetBudget(%v): %v; want ErrBudget", usd, err)
		}
	}
	if got := budget("b"); got != 0.10 {
		t.Errorf("budget after refused changes = %v; want 0.10", got)
	}
	// Two tasks' worth is reserved under the old budget; the third fits
	// only after the raise.
	for _, task := range []string{"t1", "t2"} {
		if ok, err := s.Reserve(ctx, "b", task, 0.04); err != nil || !ok {
			t.Fatalf("reserve %s: %v, %v", task, ok, err)
		}
	}
	if ok, _ := s.Reserve(ctx, "b", "t3", 0.04); ok {
		t.Fatal("t3 fit under the old budget")
	}
	if err := s.SetBudget(ctx, "b", 0.25); err != nil {
		t.Fatal(err)
	}
	if got := budget("b"); got != 0.25 {
		t.Errorf("budget = %v; want 0.25", got)
	}
	if ok, err := s.Reserve(ctx, "b", "t3", 0.04); err != nil || !ok {
		t.Errorf("t3 after the raise: %v, %v; want reserved", ok, err)
	}
	if err := s.SetBudget(ctx, "free", 5); !errors.Is(err, runstate.ErrBudget) {
		t.Errorf("SetBudget on a run without a budget: %v; want ErrBudget (it would limit it)", err)
	}
	if got := budget("free"); got != 0 {
		t.Errorf("run without a budget now has $%v", got)
	}
	if err := s.SetBudget(ctx, "nope", 5); !errors.Is(err, runstate.ErrNotFound) {
		t.Errorf("SetBudget of an unknown run: %v; want ErrNotFound", err)
	}
}
