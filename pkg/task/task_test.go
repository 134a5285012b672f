package task

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func sampleGenerate() Generate {
	return Generate{
		RunID: "quickstart-0123456789ab", TaskID: "ca8e17efd28af688", Character: "mara", Prompt: "piano",
		PromptText: `she plays the piano, <softly> & "well"`, Model: "kontext", ModelRef: "replicate:black-forest-labs/flux-kontext-pro",
		Params:  map[string]any{"size": 64, "aspect_ratio": "3:4", "guidance": 2.5, "steps": []any{1, 2}},
		Variant: 1, Seed: 424242, RefKey: "refs/" + strings.Repeat("ab", 32) + ".png",
		EditImageKey: "refs/" + strings.Repeat("cd", 32) + ".png", EditMaskKey: "refs/" + strings.Repeat("ef", 32) + ".png",
		OutputRetries: 2, Tags: 3, MaxAttempts: 5,
		EnqueuedAt: time.Date(2026, 12, 6, 8, 30, 1, 234_000_000, time.UTC),
	}
}

func TestGenerateWireRoundTrip(t *testing.T) {
	t.Parallel()
	for name, g := range map[string]Generate{
		"every field": sampleGenerate(),
		"zero values": {RunID: "r", TaskID: "t", Character: "c", Prompt: "p", Model: "m", ModelRef: "sim:kontext"},
	} {
		tk, opts, err := NewGenerate(g, nil, time.Minute)
		if err != nil {
			t.Fatalf("%s: NewGenerate: %v", name, err)
		}
		if len(opts) == 0 || tk.Type() != TypeGenerate {
			t.Fatalf("%s: task %s with %d options", name, tk.Type(), len(opts))
		}
		if !strings.HasPrefix(string(tk.Payload()), `{"v":2,`) {
			t.Errorf("%s: payload %s is not in the compact format", name, tk.Payload())
		}
		got, err := DecodeGenerate(tk.Payload())
		if err != nil {
			t.Fatalf("%s: DecodeGenerate: %v", name, err)
		}
		if diff := cmp.Diff(g, got); diff != "" {
			t.Errorf("%s: round trip changed the task (-sent +decoded):\n%s", name, diff)
		}
		if g.ContentKey() != got.ContentKey() {
			t.Errorf("%s: content key changed over the wire", name)
		}
	}
}

// A payload enqueued before the compact format (Generate's own JSON) still
// decodes: tasks in flight across an upgrade are worked, not dropped.
func TestGenerateDecodesFirstFormat(t *testing.T) {
	t.Parallel()
	g := sampleGenerate()
	old, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(old), `"prompt_text"`) {
		t.Fatalf("the first format has long keys: %s", old)
	}
	got, err := DecodeGenerate(old)
	if err != nil {
		t.Fatalf("DecodeGenerate(first format): %v", err)
	}
	if diff := cmp.Diff(g, got); diff != "" {
		t.Errorf("first format decoded differently (-want +got):\n%s", diff)
	}
}

func TestGenerateWireIsSmaller(t *testing.T) {
	t.Parallel()
	g := sampleGenerate()
	old, _ := json.Marshal(g)
	compact, err := EncodeGenerate(g)
	if err != nil {
		t.Fatal(err)
	}
	// Keys alone save over a hundred bytes; the time 20 more.
	if len(compact) > len(old)-120 {
		t.Errorf("compact payload %d bytes, first format %d: want at least 120 fewer\n%s", len(compact), len(old), compact)
	}
}

func TestGenerateDecodeErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ payload, want string }{
		"newer format": {`{"v":3,"r":"run"}`, "payload format 3 is newer"},
		"bad compact":  {`{"v":2,"r":7}`, "decode image:generate payload"},
		"bad first":    {`{"run_id":7}`, "decode image:generate payload"},
	} {
		if _, err := DecodeGenerate([]byte(tc.payload)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: DecodeGenerate(%s) = %v; want an error saying %q", name, tc.payload, err, tc.want)
		}
	}
}
