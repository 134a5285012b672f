package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The spool gives the bytes WriteJSONL gives for the same records, however
// they arrive (concurrently, in any order, with a task recorded twice), and
// the same records a character at a time.
func TestSpoolMatchesWriteJSONL(t *testing.T) {
	t.Parallel()
	_, records := sampleRun() // holds a stale second record of t01
	var want bytes.Buffer
	if err := WriteJSONL(&want, records); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sp, err := NewSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	shuffled := append([]Record(nil), records...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	var wg sync.WaitGroup
	for _, r := range shuffled {
		raw, err := json.Marshal(r) // as a worker stores it: HTML escaped
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := sp.Add(raw); err != nil {
				t.Errorf("Add(%s): %v", r.Task, err)
			}
		})
	}
	wg.Wait()
	if sp.Len() != len(records)-1 || sp.Dropped() != 1 {
		t.Errorf("spooled %d tasks, dropped %d; want %d and the stale record", sp.Len(), sp.Dropped(), len(records)-1)
	}
	var got bytes.Buffer
	if n, err := sp.WriteTo(&got); err != nil || n != int64(got.Len()) {
		t.Fatalf("WriteTo = %d, %v; wrote %d bytes", n, err, got.Len())
	}
	if got.String() != want.String() {
		t.Errorf("spooled manifest differs from WriteJSONL's:\n%s", cmp.Diff(want.String(), got.String()))
	}
	meta := RunMeta{Run: "r1", Total: 9, CreatedAt: records[0].StartedAt}
	sum, err := sp.Summary(meta)
	if err != nil {
		t.Fatalf("Summary: %v", err)
	}
	if diff := cmp.Diff(Summarize(meta, records), sum); diff != "" {
		t.Errorf("Summary differs from Summarize's (-want +got):\n%s", diff)
	}

	wantRecs := Dedupe(records)
	Sort(wantRecs)
	var chars []string
	var all []Record
	for group, err := range sp.Characters() {
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range group {
			if r.Character != group[0].Character {
				t.Errorf("group of %s holds a record of %s", group[0].Character, r.Character)
			}
		}
		chars = append(chars, group[0].Character)
		all = append(all, group...)
	}
	if diff := cmp.Diff([]string{"mara", "tomas"}, chars); diff != "" {
		t.Errorf("characters (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantRecs, all); diff != "" {
		t.Errorf("Characters records (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ideogram", "kontext"}, sp.Models()); diff != "" {
		t.Errorf("Models (-want +got):\n%s", diff)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 1 {
		t.Fatalf("spool files %v; want one", files)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(files[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the spool file: %v", err)
	}
	if err := sp.Add([]byte(`{"task":"late"}`)); err == nil {
		t.Error("Add after Close succeeded")
	}
}

func TestSpoolUnreadable(t *testing.T) {
	t.Parallel()
	sp, err := NewSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for _, bad := range []string{`{"task":`, `{"character":"mara"}`, `[1,2]`} {
		if err := sp.Add([]byte(bad)); !errors.Is(err, ErrUnreadable) {
			t.Errorf("Add(%s) = %v; want ErrUnreadable", bad, err)
		}
	}
	if sp.Len() != 0 {
		t.Errorf("%d unreadable records spooled", sp.Len())
	}
	n := 0
	for _, err := range sp.Characters() {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 0 {
		t.Errorf("an empty spool yielded %d characters", n)
	}
}

// decodeRecord reads what encoding/json reads, the same way: the records
// a fan-in spools may have been written by any version of likeness.
func TestDecodeRecordAsEncodingJSON(t *testing.T) {
	t.Parallel()
	_, records := sampleRun()
	full, err := json.Marshal(records[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{
		string(full),
		`{"task":"t1","params":{"size":64,"steps":[1,2.5],"style":null,"raw":true},"cost_usd":0.04}`,
		`{"TASK":"t1","Character":"mara","finished_at":"2026-01-02T03:04:05.123456789+01:00"}`,
		`{"task":"t1","task":"t2","unknown":{"a":[1]}}`,
		"{\"task\":\"t1\",\"prompt_text\":\"bad \xff utf-8 \\u003cb\\u003e\"}",
	} {
		var want, got Record
		werr := json.Unmarshal([]byte(raw), &want)
		gerr := decodeRecord([]byte(raw), &got)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%s: encoding/json says %v, decodeRecord %v", raw, werr, gerr)
			continue
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: decodeRecord differs from encoding/json (-want +got):\n%s", raw, diff)
		}
	}
}
