package manifest

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Spool holds a run's records for a fan-in that must not keep them all in
// memory: a run of 100,000 tasks has about 100 MB of records. Each record
// added is written, as its manifest line, to a temporary file; memory keeps
// only what orders and deduplicates it (character, prompt, model, variant,
// task, finish time), what run.json counts of it, and where its line is.
// Once every record is in, Summary counts them, WriteTo writes the manifest
// and Characters reads the records back a character at a time, all in
// manifest order (see Sort).
//
// Like Dedupe, the Spool keeps one record per task, the one with the latest
// FinishedAt; Add is safe for concurrent use. Close removes the file.
type Spool struct {
	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	off     int64
	entries []spoolEntry
	byTask  map[string]int
	strs    map[string]string // interned ids: 100,000 records share a few hundred
	dropped int
	sorted  bool
}

type spoolEntry struct {
	character, prompt, model, task string
	variant                        int
	finished                       time.Time
	off                            int64
	n                              int
	tally                          tally
}

// tally is what run.json counts of a record (see Summarizer.Add): the
// spool summarizes the run without reading its records back.
type tally struct {
	modelRef  string
	status    Status
	attempts  int
	costUSD   float64
	cached    bool
	latencyMS int64
}

// decodeRecord decodes a stored record or a spooled line with the JSON v2
// decoder (github.com/go-json-experiment/json, which encoding/json is
// becoming), told to accept what encoding/json accepts: names in any case,
// a name twice, invalid UTF-8. A fan-in decodes each of its records twice
// (spooled, then read back for the artifacts); v2 takes half the time and
// a quarter of the allocations.
func decodeRecord(data []byte, r *Record) error {
	return jsonv2.Unmarshal(data, r, jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true), jsonv2.MatchCaseInsensitiveNames(true))
}

// ErrUnreadable marks a record Spool.Add could not decode (or that names no
// task): the fan-in leaves it out and lists it in run.json.
var ErrUnreadable = errors.New("record unreadable")

// NewSpool starts a spool in a new temporary file in dir (os.TempDir()
// when dir is empty).
func NewSpool(dir string) (*Spool, error) {
	f, err := os.CreateTemp(dir, "likeness-records-*.jsonl")
	if err != nil {
		return nil, fmt.Errorf("spool records: %w", err)
	}
	return &Spool{f: f, w: bufio.NewWriterSize(f, 256<<10), byTask: map[string]int{}, strs: map[string]string{}}, nil
}

// Add decodes one stored record and spools it. It returns an error wrapping
// ErrUnreadable for data that is not a record, and the file's error if the
// record cannot be written.
func (s *Spool) Add(data []byte) error {
	_, err := s.AddTask(data)
	return err
}

// AddTask is Add that also returns the id of the record's task (a fan-in
// reading folded parts notes which tasks they hold).
func (s *Spool) AddTask(data []byte) (string, error) {
	var r Record
	if err := decodeRecord(data, &r); err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnreadable, err)
	}
	if r.Task == "" {
		return "", fmt.Errorf("%w: it names no task", ErrUnreadable)
	}
	return r.Task, s.AddRecord(r)
}

// AddRecord spools r.
func (s *Spool) AddRecord(r Record) error {
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false) // as Writer writes lines
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("spool record of task %s: %w", r.Task, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("spool records: the spool is closed")
	}
	e := spoolEntry{
		character: s.intern(r.Character), prompt: s.intern(r.Prompt), model: s.intern(r.Model), task: r.Task,
		variant: r.Variant, finished: r.FinishedAt, off: s.off, n: line.Len(),
		tally: tally{
			modelRef: s.intern(r.ModelRef), status: Status(s.intern(string(r.Status))), attempts: r.Attempts,
			costUSD: r.CostUSD, cached: r.Cached, latencyMS: r.ProviderLatencyMS,
		},
	}
	if _, err := s.w.Write(line.Bytes()); err != nil {
		return fmt.Errorf("spool records: %w", err)
	}
	s.off += int64(line.Len())
	s.sorted = false
	if i, seen := s.byTask[r.Task]; seen {
		s.dropped++
		if !r.FinishedAt.Before(s.entries[i].finished) {
			s.entries[i] = e
		}
		return nil
	}
	s.byTask[r.Task] = len(s.entries)
	s.entries = append(s.entries, e)
	return nil
}

func (s *Spool) intern(v string) string {
	if w, ok := s.strs[v]; ok {
		return w
	}
	s.strs[v] = v
	return v
}

// Len is the number of tasks spooled.
func (s *Spool) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Dropped is the number of records set aside as second records of a task.
func (s *Spool) Dropped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Models returns the models with at least one record, sorted.
func (s *Spool) Models() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, e := range s.entries {
		seen[e.model] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

// ready flushes the file and sorts the entries in manifest order.
func (s *Spool) ready() error {
	if s.f == nil {
		return errors.New("spool records: the spool is closed")
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("spool records: %w", err)
	}
	if !s.sorted {
		slices.SortFunc(s.entries, func(a, b spoolEntry) int {
			return cmp.Or(
				cmp.Compare(a.character, b.character),
				cmp.Compare(a.prompt, b.prompt),
				cmp.Compare(a.model, b.model),
				cmp.Compare(a.variant, b.variant),
				cmp.Compare(a.task, b.task),
			)
		})
		s.sorted = true
	}
	return nil
}

// Summary is run.json for the spooled records (see Summarizer), counted
// from what the spool keeps in memory. Add must not be called meanwhile.
func (s *Spool) Summary(meta RunMeta) (Summary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ready(); err != nil {
		return Summary{}, err
	}
	z := NewSummarizer(meta)
	for _, e := range s.entries {
		t := e.tally
		z.Add(Record{
			Model: e.model, ModelRef: t.modelRef, Status: t.status, Attempts: t.attempts, CostUSD: t.costUSD,
			Cached: t.cached, ProviderLatencyMS: t.latencyMS, FinishedAt: e.finished,
		})
	}
	return z.Summary(), nil
}

// WriteTo writes the manifest: every spooled record's line, in manifest
// order, as Writer writes them. It may run while Characters is read (both
// only read the spool); Add must not be called meanwhile.
func (s *Spool) WriteTo(w io.Writer) (int64, error) {
	s.mu.Lock()
	err := s.ready()
	entries := s.entries
	s.mu.Unlock()
	if err != nil {
		return 0, err
	}
	var (
		buf     []byte
		written int64
	)
	for _, e := range entries {
		s.mu.Lock()
		buf, err = s.readLine(e, buf)
		s.mu.Unlock()
		if err != nil {
			return written, err
		}
		n, err := w.Write(buf)
		written += int64(n)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// Characters yields the spooled records a character at a time, in manifest
// order: every record of one character, sorted (see Sort), then the next
// character's. Only one character's records are in memory at once. Add
// must not be called meanwhile.
func (s *Spool) Characters() iter.Seq2[[]Record, error] {
	return func(yield func([]Record, error) bool) {
		s.mu.Lock()
		err := s.ready()
		entries := s.entries
		s.mu.Unlock()
		if err != nil {
			yield(nil, err)
			return
		}
		var buf []byte
		for i := 0; i < len(entries); {
			j := i
			for j < len(entries) && entries[j].character == entries[i].character {
				j++
			}
			group := make([]Record, 0, j-i)
			for _, e := range entries[i:j] {
				s.mu.Lock()
				line, r, err := s.read(e, buf)
				s.mu.Unlock()
				if err != nil {
					yield(nil, err)
					return
				}
				buf = line
				group = append(group, r)
			}
			if !yield(group, nil) {
				return
			}
			i = j
		}
	}
}

// readLine reads one entry's line, into buf when it is large enough.
func (s *Spool) readLine(e spoolEntry, buf []byte) ([]byte, error) {
	if cap(buf) < e.n {
		buf = make([]byte, e.n)
	}
	buf = buf[:e.n]
	if s.f == nil {
		return buf, errors.New("spool records: the spool is closed")
	}
	if _, err := s.f.ReadAt(buf, e.off); err != nil {
		return buf, fmt.Errorf("read spooled record of task %s: %w", e.task, err)
	}
	return buf, nil
}

// read reads and decodes one entry's line, into buf when it is large
// enough.
func (s *Spool) read(e spoolEntry, buf []byte) ([]byte, Record, error) {
	buf, err := s.readLine(e, buf)
	if err != nil {
		return buf, Record{}, err
	}
	var r Record
	if err := decodeRecord(buf, &r); err != nil {
		return buf, Record{}, fmt.Errorf("read spooled record of task %s: %w", e.task, err)
	}
	return buf, r, nil
}

// Close removes the spool's file. It is safe to call more than once.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	name := s.f.Name()
	err := s.f.Close()
	s.f = nil
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	return err
}
