package spec

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// loadMap loads spec text whose references are https URLs or ref.png.
func loadMap(t *testing.T, spec string, files ...string) *Spec {
	t.Helper()
	fsys := fstest.MapFS{"spec.yaml": {Data: []byte(spec)}, "ref.png": {Data: encode(t, "png", 4, 4)}}
	for i := 0; i+1 < len(files); i += 2 {
		fsys[files[i]] = &fstest.MapFile{Data: []byte(files[i+1])}
	}
	s, err := Load(fsys, "spec.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const expandSpec = `version: 1
name: expand
characters:
  - {id: mara, reference: ref.png}
  - {id: theo, reference: "https://example.com/theo.png"}
prompts:
  - {id: piano, text: playing the piano}
  - {id: anime, text: as anime}
  - {id: rain, text: in the rain}
models:
  - {id: kontext, model: sim:kontext, params: {size: 256}}
  - {id: seededit, model: sim:seededit}
variants: 2
seed: 7
`

func TestExpandOrderAndFields(t *testing.T) {
	t.Parallel()
	s := loadMap(t, expandSpec)
	tasks := s.Expand()
	if got, want := len(tasks), 2*3*2*2; got != want || s.TaskCount() != want {
		t.Fatalf("len(Expand()) = %d, TaskCount() = %d, want %d", got, s.TaskCount(), want)
	}
	var order []string
	ids := map[string]bool{}
	for _, task := range tasks {
		order = append(order, fmt.Sprintf("%s/%s/%s/%d", task.Character, task.Prompt, task.Model, task.Variant))
		if ids[task.ID] {
			t.Errorf("duplicate task id %s", task.ID)
		}
		ids[task.ID] = true
		if task.Seed < 0 || task.Seed > MaxSeed {
			t.Errorf("task %s seed %d out of [0, %d]", task.ID, task.Seed, MaxSeed)
		}
	}
	wantOrder := []string{
		"mara/piano/kontext/0", "mara/piano/kontext/1", "mara/piano/seededit/0", "mara/piano/seededit/1",
		"mara/anime/kontext/0", "mara/anime/kontext/1", "mara/anime/seededit/0", "mara/anime/seededit/1",
		"mara/rain/kontext/0", "mara/rain/kontext/1", "mara/rain/seededit/0", "mara/rain/seededit/1",
		"theo/piano/kontext/0", "theo/piano/kontext/1", "theo/piano/seededit/0", "theo/piano/seededit/1",
		"theo/anime/kontext/0", "theo/anime/kontext/1", "theo/anime/seededit/0", "theo/anime/seededit/1",
		"theo/rain/kontext/0", "theo/rain/kontext/1", "theo/rain/seededit/0", "theo/rain/seededit/1",
	}
	if diff := cmp.Diff(wantOrder, order); diff != "" {
		t.Errorf("expansion order (-want +got):\n%s", diff)
	}

	want := Task{
		ID: TaskID("theo", "anime", "kontext", 1), Character: "theo",
		Prompt: "anime", PromptText: "as anime",
		Model: "kontext", ModelRef: "sim:kontext", Provider: "sim",
		Params: map[string]any{"size": 256}, Variant: 1,
		Seed: DeriveSeed(7, "theo", "anime", "kontext", "1"),
	}
	if diff := cmp.Diff(want, tasks[17]); diff != "" {
		t.Errorf("tasks[17] (-want +got):\n%s", diff)
	}

	// Each task owns its params.
	tasks[0].Params["size"] = 999
	if got := s.Expand()[1].Params["size"]; got != 256 {
		t.Errorf("changing one task's params changed another's: size = %v", got)
	}
	if got := s.Models[0].Params["size"]; got != 256 {
		t.Errorf("changing a task's params changed the spec's: size = %v", got)
	}
}

func TestTaskIDFormat(t *testing.T) {
	t.Parallel()
	// sha256("mara\x00piano\x00kontext\x000"), first 8 bytes; a golden value
	// so a change to the id scheme (which would re-run every stored run) is
	// noticed.
	if got, want := TaskID("mara", "piano", "kontext", 0), "ca8e17efd28af688"; got != want {
		t.Errorf("TaskID = %s, want %s", got, want)
	}
}

func TestDeterminism(t *testing.T) {
	t.Parallel()
	a, b := loadMap(t, expandSpec), loadMap(t, expandSpec)
	if diff := cmp.Diff(a.Expand(), b.Expand()); diff != "" {
		t.Errorf("two loads of one spec expand differently (-a +b):\n%s", diff)
	}
	if a.Digest() != b.Digest() {
		t.Errorf("two loads of one spec have different digests")
	}
}

func TestDigest(t *testing.T) {
	t.Parallel()
	good, err := LoadFile("testdata/good.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Same content in flow style, other key order, other comments and
	// another budget (which decides what is sent, not what an output is).
	reformatted, err := LoadFile("testdata/good-reformatted.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if good.Digest() != reformatted.Digest() {
		t.Errorf("reformatting changed the digest: %s vs %s", good.Digest(), reformatted.Digest())
	}
	if diff := cmp.Diff(good.Expand(), reformatted.Expand()); diff != "" {
		t.Errorf("reformatting changed the tasks (-good +reformatted):\n%s", diff)
	}

	base := loadMap(t, expandSpec).Digest()
	tests := []struct {
		name     string
		old, new string // replace old with new in expandSpec
		same     bool   // the digest should not change
	}{
		{name: "seed", old: "seed: 7", new: "seed: 8"},
		{name: "variants", old: "variants: 2", new: "variants: 3"},
		{name: "output_retries", old: "seed: 7", new: "seed: 7\noutput_retries: 0"},
		{name: "max_attempts", old: "seed: 7", new: "seed: 7\nmax_attempts: 1"},
		{name: "tags", old: "seed: 7", new: "seed: 7\ntags: {number_of_tags: 3}"},
		{name: "prompt text", old: "as anime", new: "as manga"},
		{name: "param", old: "size: 256", new: "size: 257"},
		{name: "whole float as int", old: "size: 256", new: "size: 256.0", same: true}, // both reach the provider as 256
		{name: "model order", old: "  - {id: kontext, model: sim:kontext, params: {size: 256}}\n  - {id: seededit, model: sim:seededit}",
			new: "  - {id: seededit, model: sim:seededit}\n  - {id: kontext, model: sim:kontext, params: {size: 256}}"},
		{name: "reference", old: "reference: ref.png", new: "reference: other.png"},
		{name: "budget", old: "seed: 7", new: "seed: 7\nbudget_usd: 3", same: true},
		{name: "comments and quoting", old: "text: as anime}", new: "text: \"as anime\"}  # quoted now", same: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spec := strings.Replace(expandSpec, tt.old, tt.new, 1)
			if spec == expandSpec {
				t.Fatalf("%q not found in the spec", tt.old)
			}
			got := loadMap(t, spec, "other.png", string(encode(t, "png", 5, 5))).Digest()
			if same := got == base; same != tt.same {
				t.Errorf("digest unchanged = %v, want %v", same, tt.same)
			}
		})
	}
}

func TestDeriveSeed(t *testing.T) {
	t.Parallel()
	if DeriveSeed(42, "a", "b") != DeriveSeed(42, "a", "b") {
		t.Error("DeriveSeed is not deterministic")
	}
	distinct := [][]string{{"ab", "c"}, {"a", "bc"}, {"abc"}, {"a", "b", "c"}, {}}
	seen := map[int64]string{}
	for _, parts := range distinct {
		s := DeriveSeed(1, parts...)
		if prev, dup := seen[s]; dup {
			t.Errorf("DeriveSeed(1, %q) = DeriveSeed(1, %s)", parts, prev)
		}
		seen[s] = fmt.Sprintf("%q", parts)
	}
	if DeriveSeed(1, "x") == DeriveSeed(2, "x") {
		t.Error("the base seed does not change the derived seed")
	}
	// Range and rough uniformity: 4096 seeds, each half of the range gets
	// a fair share, all in [0, MaxSeed], no collisions.
	var high int
	seeds := map[int64]bool{}
	for i := range 4096 {
		s := DeriveSeed(0, strconv.Itoa(i))
		if s < 0 || s > MaxSeed {
			t.Fatalf("DeriveSeed out of range: %d", s)
		}
		if s > MaxSeed/2 {
			high++
		}
		seeds[s] = true
	}
	if high < 1800 || high > 2300 {
		t.Errorf("%d of 4096 seeds in the upper half; want about 2048", high)
	}
	if len(seeds) != 4096 {
		t.Errorf("%d distinct seeds of 4096", len(seeds))
	}
}

func TestRetrySeed(t *testing.T) {
	t.Parallel()
	for _, base := range []int64{0, 1, 42, MaxSeed} {
		if got := RetrySeed(base, 0); got != base {
			t.Errorf("RetrySeed(%d, 0) = %d, want the task seed", base, got)
		}
		seen := map[int64]int{base: 0}
		for attempt := 1; attempt <= 10; attempt++ {
			s := RetrySeed(base, attempt)
			if s != RetrySeed(base, attempt) {
				t.Errorf("RetrySeed(%d, %d) is not deterministic", base, attempt)
			}
			if s < 0 || s > MaxSeed {
				t.Errorf("RetrySeed(%d, %d) = %d, out of range", base, attempt, s)
			}
			if prev, dup := seen[s]; dup {
				t.Errorf("RetrySeed(%d, %d) = %d, same as attempt %d", base, attempt, s, prev)
			}
			seen[s] = attempt
		}
	}
}
