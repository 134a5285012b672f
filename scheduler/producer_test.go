package scheduler

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/likeness-run/likeness/pkg/spec"
)

func TestInterleaveAlternatesModels(t *testing.T) {
	t.Parallel()
	var tasks []spec.Task
	for _, m := range []string{"a", "a", "a", "b", "c", "c"} {
		tasks = append(tasks, spec.Task{Model: m})
	}
	var got []string
	for _, tk := range interleave(tasks) {
		got = append(got, tk.Model)
	}
	if diff := cmp.Diff([]string{"a", "b", "c", "a", "c", "a"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}
