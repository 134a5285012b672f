package manifest

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestJSONLRoundTrip(t *testing.T) {
	t.Parallel()
	_, records := sampleRun()

	var buf bytes.Buffer
	if err := WriteJSONL(&buf, records); err != nil {
		t.Fatalf("WriteJSONL: %v", err)
	}
	got, err := ReadJSONL(&buf)
	if err != nil {
		t.Fatalf("ReadJSONL: %v", err)
	}
	want := Dedupe(records)
	Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
	if len(got) >= len(records) {
		t.Errorf("round trip kept %d of %d records; the sample has a duplicate task", len(got), len(records))
	}
}

func TestWriteJSONLStableOrder(t *testing.T) {
	t.Parallel()
	_, records := sampleRun()
	reversed := make([]Record, len(records))
	for i, r := range records {
		reversed[len(records)-1-i] = r
	}
	rotated := append(append([]Record{}, records[3:]...), records[:3]...)

	var want bytes.Buffer
	if err := WriteJSONL(&want, records); err != nil {
		t.Fatalf("WriteJSONL: %v", err)
	}
	for name, in := range map[string][]Record{"reversed": reversed, "rotated": rotated} {
		var got bytes.Buffer
		if err := WriteJSONL(&got, in); err != nil {
			t.Fatalf("WriteJSONL(%s): %v", name, err)
		}
		if diff := cmp.Diff(want.String(), got.String()); diff != "" {
			t.Errorf("WriteJSONL(%s) differs from input order (-want +got):\n%s", name, diff)
		}
	}

	lines := strings.Split(strings.TrimSuffix(want.String(), "\n"), "\n")
	if len(lines) != len(Dedupe(records)) {
		t.Errorf("got %d lines, want one per task (%d)", len(lines), len(Dedupe(records)))
	}
	if !strings.Contains(want.String(), `<b>\"sheet\"</b> & more`) {
		t.Errorf("prompt text should be written unescaped for readability:\n%s", want.String())
	}
}

func TestWriteJSONLDoesNotModifyInput(t *testing.T) {
	t.Parallel()
	_, records := sampleRun()
	before := append([]Record{}, records...)
	if err := WriteJSONL(&bytes.Buffer{}, records); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, records); diff != "" {
		t.Errorf("WriteJSONL modified its input (-before +after):\n%s", diff)
	}
}

func TestDedupe(t *testing.T) {
	t.Parallel()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	r := func(task string, finished int, st Status) Record {
		return Record{Task: task, FinishedAt: at(finished), Status: st}
	}
	tests := []struct {
		name string
		in   []Record
		want []Record
	}{
		{name: "empty", in: nil, want: []Record{}},
		{
			name: "no duplicates keeps order",
			in:   []Record{r("b", 1, Succeeded), r("a", 2, Succeeded)},
			want: []Record{r("b", 1, Succeeded), r("a", 2, Succeeded)},
		},
		{
			name: "later finish wins when it comes last",
			in:   []Record{r("a", 1, Failed), r("b", 1, Succeeded), r("a", 5, Succeeded)},
			want: []Record{r("a", 5, Succeeded), r("b", 1, Succeeded)},
		},
		{
			name: "later finish wins when it comes first",
			in:   []Record{r("a", 5, Succeeded), r("a", 1, Failed)},
			want: []Record{r("a", 5, Succeeded)},
		},
		{
			name: "tie keeps the later record",
			in:   []Record{r("a", 3, Failed), r("a", 3, Succeeded)},
			want: []Record{r("a", 3, Succeeded)},
		},
		{
			name: "three deliveries",
			in:   []Record{r("a", 2, Failed), r("a", 9, Succeeded), r("a", 4, SkippedCanceled)},
			want: []Record{r("a", 9, Succeeded)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, Dedupe(tt.in)); diff != "" {
				t.Errorf("Dedupe() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadJSONL(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 200_000) // past bufio.Scanner's default limit
	tests := []struct {
		name    string
		in      string
		want    []Record
		wantErr string // substring; empty means no error
	}{
		{name: "empty", in: "", want: nil},
		{name: "no trailing newline", in: `{"task":"a"}`, want: []Record{{Task: "a"}}},
		{
			name: "blank lines and CRLF",
			in:   "\n{\"task\":\"a\"}\r\n\n  \n{\"task\":\"b\",\"status\":\"failed\"}\n",
			want: []Record{{Task: "a"}, {Task: "b", Status: Failed}},
		},
		{name: "unknown fields ignored", in: `{"task":"a","from_the_future":1}`, want: []Record{{Task: "a"}}},
		{name: "long line", in: `{"task":"a","error":"` + long + `"}`, want: []Record{{Task: "a", Error: long}}},
		{name: "bad json names its line", in: "{\"task\":\"a\"}\n\n{\"task\":\n", wantErr: "manifest line 3:"},
		{name: "wrong type names its line", in: "{\"task\":\"a\"}\n{\"variant\":\"one\"}\n", wantErr: "manifest line 2:"},
		{name: "two objects on one line", in: `{"task":"a"} {"task":"b"}`, wantErr: "manifest line 1:"},
		{name: "not an object", in: "{\"task\":\"a\"}\n[1,2]\n", wantErr: "manifest line 2:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ReadJSONL(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadJSONL() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadJSONL(): %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ReadJSONL() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWriterStreams checks the streaming writer: lines in the order given,
// a task's second record dropped, and the same bytes as WriteJSONL for
// records already deduplicated and sorted.
func TestWriterStreams(t *testing.T) {
	t.Parallel()
	_, records := sampleRun()
	var want bytes.Buffer
	if err := WriteJSONL(&want, records); err != nil {
		t.Fatal(err)
	}
	sorted := Dedupe(records)
	Sort(sorted)
	var got bytes.Buffer
	w := NewWriter(&got)
	for _, r := range append(sorted, sorted[0]) {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want.String(), got.String()); diff != "" {
		t.Errorf("Writer differs from WriteJSONL (-want +got):\n%s", diff)
	}
	if w.Dropped != 1 || w.Len() != len(sorted) {
		t.Errorf("Dropped = %d, Len = %d; want 1 and %d", w.Dropped, w.Len(), len(sorted))
	}
}
