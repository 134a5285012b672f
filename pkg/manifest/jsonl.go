package manifest

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Sort orders records in place by character, prompt, model, variant and
// task: the order of manifest.jsonl and of the report, independent of the
// order in which workers finished.
func Sort(records []Record) {
	slices.SortStableFunc(records, compareRecords)
}

func compareRecords(a, b Record) int {
	return cmp.Or(
		cmp.Compare(a.Character, b.Character),
		cmp.Compare(a.Prompt, b.Prompt),
		cmp.Compare(a.Model, b.Model),
		cmp.Compare(a.Variant, b.Variant),
		cmp.Compare(a.Task, b.Task),
	)
}

// Dedupe returns one record per task id, keeping the one with the latest
// FinishedAt (on a tie, the later one in records). At-least-once delivery
// can leave two records for one task; the manifest lists each task once.
// The result is in order of each task's first appearance; records is not
// modified.
func Dedupe(records []Record) []Record {
	out := make([]Record, 0, len(records))
	index := make(map[string]int, len(records))
	for _, r := range records {
		i, seen := index[r.Task]
		if !seen {
			index[r.Task] = len(out)
			out = append(out, r)
			continue
		}
		if !r.FinishedAt.Before(out[i].FinishedAt) {
			out[i] = r
		}
	}
	return out
}

// WriteJSONL writes manifest.jsonl: the records deduplicated by task and
// sorted (see Dedupe and Sort), one JSON object per line. The same records
// in any order produce the same bytes. records is not modified.
func WriteJSONL(w io.Writer, records []Record) error {
	records = Dedupe(records)
	Sort(records)
	mw := NewWriter(w)
	for _, r := range records {
		if err := mw.Write(r); err != nil {
			return err
		}
	}
	return mw.Close()
}

// ReadJSONL reads manifest.jsonl as written by WriteJSONL. Blank lines are
// ignored and lines have no length limit; a line that is not one JSON record
// is an error naming its 1-based line number. Unknown fields are ignored so
// that older readers accept newer manifests.
func ReadJSONL(r io.Reader) ([]Record, error) {
	br := bufio.NewReader(r)
	var records []Record
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read manifest line %d: %w", line, err)
		}
		if b = bytes.TrimSpace(b); len(b) > 0 {
			var rec Record
			if uerr := json.Unmarshal(b, &rec); uerr != nil {
				return nil, fmt.Errorf("manifest line %d: %w", line, uerr)
			}
			records = append(records, rec)
		}
		if err != nil { // io.EOF
			return records, nil
		}
	}
}

// Writer writes manifest.jsonl one record at a time, so a fan-in can stream
// records from the store to the manifest without holding them all. It
// writes records in the order given (WriteJSONL sorts; a streaming caller
// picks its order, e.g. that of the record keys) and drops a second record
// for a task already written, keeping only the set of task ids in memory.
// Since the store keeps one record object per task, a stream read from it
// has no duplicates to drop. Close flushes; the Writer does not close w.
type Writer struct {
	bw      *bufio.Writer
	enc     *json.Encoder
	written map[string]struct{}
	// Dropped counts records dropped as second records of a task.
	Dropped int
}

// NewWriter returns a Writer appending manifest lines to w.
func NewWriter(w io.Writer) *Writer {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &Writer{bw: bw, enc: enc, written: make(map[string]struct{})}
}

// Write appends r as one line, unless a record of r.Task was written.
func (w *Writer) Write(r Record) error {
	if _, dup := w.written[r.Task]; dup {
		w.Dropped++
		return nil
	}
	if err := w.enc.Encode(r); err != nil {
		return fmt.Errorf("write manifest task %s: %w", r.Task, err)
	}
	w.written[r.Task] = struct{}{}
	return nil
}

// Len is the number of lines written.
func (w *Writer) Len() int { return len(w.written) }

// Close flushes the lines still buffered.
func (w *Writer) Close() error {
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}
