package export_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/export"
	"github.com/likeness-run/likeness/pkg/manifest"
)

func mtimes(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			out[p] = fi.ModTime()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExportImageFolder(t *testing.T) {
	t.Parallel()
	f := newRun(t, true, 0)
	out := t.TempDir()
	res, err := export.Run(t.Context(), f.st, export.Dir{Root: out}, export.Options{Run: f.run, Format: export.ImageFolder})
	if err != nil {
		t.Fatal(err)
	}
	want := f.succeeded()
	if res.Records != len(want) || res.Written != len(want)+1 || res.Kept != 0 || !res.Finalized {
		t.Errorf("result %+v; want %d records, %d files written", res, len(want), len(want)+1)
	}
	readImageFolder(t, out, want)

	// A second export writes nothing and touches nothing.
	before := mtimes(t, out)
	res, err = export.Run(t.Context(), f.st, export.Dir{Root: out}, export.Options{Run: f.run, Format: export.ImageFolder})
	if err != nil {
		t.Fatal(err)
	}
	if res.Written != 0 || res.Kept != len(want)+1 {
		t.Errorf("second export: %+v; want nothing written", res)
	}
	if after := mtimes(t, out); !mapsEqual(before, after) {
		t.Errorf("second export modified files")
	}

	// A file replaced by other bytes (not trusted for being there) is
	// written again, and only it.
	victim := filepath.Join(out, filepath.FromSlash(export.ImagePath(want[3])))
	if err := os.WriteFile(victim, []byte("not the image"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = export.Run(t.Context(), f.st, export.Dir{Root: out}, export.Options{Run: f.run, Format: export.ImageFolder})
	if err != nil || res.Written != 1 {
		t.Errorf("export after damage: %+v, %v; want exactly the damaged file written", res, err)
	}
	readImageFolder(t, out, want)
}

func mapsEqual(a, b map[string]time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !b[k].Equal(v) {
			return false
		}
	}
	return true
}

func TestExportWebDataset(t *testing.T) {
	t.Parallel()
	f := newRun(t, true, 0)
	out := t.TempDir()
	const capBytes = 24 << 10
	opts := export.Options{Run: f.run, Format: export.WebDataset, ShardBytes: capBytes}
	res, err := export.Run(t.Context(), f.st, export.Dir{Root: out}, opts)
	if err != nil {
		t.Fatal(err)
	}
	shards := readShards(t, out, f.succeeded(), capBytes)
	if shards < 3 || res.Written != shards {
		t.Errorf("%d shards, result %+v; want several shards under a %d-byte cap, all written", shards, res, capBytes)
	}
	before := mtimes(t, out)
	res, err = export.Run(t.Context(), f.st, export.Dir{Root: out}, opts)
	if err != nil || res.Written != 0 || res.Kept != shards {
		t.Errorf("second export: %+v, %v; want every shard kept", res, err)
	}
	if after := mtimes(t, out); !mapsEqual(before, after) {
		t.Errorf("second export modified shards")
	}

	// A shard whose image bytes changed (same size) is rewritten, and only it.
	victim := filepath.Join(out, export.ShardName(1))
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	data[2*512+100] ^= 0xff // inside the first image, after its header
	if err := os.WriteFile(victim, data, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = export.Run(t.Context(), f.st, export.Dir{Root: out}, opts)
	if err != nil || res.Written != 1 {
		t.Errorf("export after damage: %+v, %v; want the damaged shard written again", res, err)
	}
	readShards(t, out, f.succeeded(), capBytes)
}

func TestExportJSONLAndFilters(t *testing.T) {
	t.Parallel()
	f := newRun(t, true, 0)
	tests := []struct {
		name string
		opts export.Options
		keep func(manifest.Record) bool
	}{
		{"all", export.Options{}, func(manifest.Record) bool { return true }},
		{"failed", export.Options{Statuses: []manifest.Status{manifest.Failed}}, func(r manifest.Record) bool { return r.Status == manifest.Failed }},
		{"model", export.Options{Models: []string{"seededit"}}, func(r manifest.Record) bool { return r.Model == "seededit" }},
		{"character and status", export.Options{Characters: []string{"theo"}, Statuses: []manifest.Status{manifest.Succeeded, manifest.SkippedBudget}},
			func(r manifest.Record) bool { return r.Character == "theo" && r.Status != manifest.Failed }},
		{"character in the spec without records", export.Options{Characters: []string{"zoe"}}, func(manifest.Record) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			opts := tt.opts
			opts.Run, opts.Format = f.run, export.JSONL
			if _, err := export.Run(t.Context(), f.st, export.Dir{Root: out}, opts); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join(out, export.RecordsFile))
			if err != nil {
				t.Fatal(err)
			}
			got, err := manifest.ReadJSONL(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			var want []manifest.Record
			for _, r := range f.records {
				if tt.keep(r) {
					want = append(want, r)
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d lines, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i].Task != want[i].Task || got[i].Status != want[i].Status {
					t.Errorf("line %d: task %s %s, want %s %s", i+1, got[i].Task, got[i].Status, want[i].Task, want[i].Status)
				}
			}
		})
	}
}

func TestExportBadInput(t *testing.T) {
	t.Parallel()
	f := newRun(t, true, 0)
	tests := []struct {
		name string
		opts export.Options
		want string
	}{
		{"unknown run", export.Options{Run: "nope-123", Format: export.JSONL}, "run nope-123 not found"},
		{"format", export.Options{Run: f.run, Format: "parquet"}, `unknown format "parquet"`},
		{"status", export.Options{Run: f.run, Format: export.JSONL, Statuses: []manifest.Status{"done"}}, `--status "done"`},
		{"failed images", export.Options{Run: f.run, Format: export.ImageFolder, Statuses: []manifest.Status{manifest.Failed}}, "only succeeded tasks have"},
		{"model", export.Options{Run: f.run, Format: export.ImageFolder, Models: []string{"kontxt"}}, `--model "kontxt": run exp-1a2b has no such id (it has: kontext, seededit)`},
		{"character", export.Options{Run: f.run, Format: export.WebDataset, Characters: []string{"ann"}}, `--character "ann"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			_, err := export.Run(t.Context(), f.st, export.Dir{Root: out}, tt.opts)
			var ie *export.InputError
			if !errors.As(err, &ie) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v; want an InputError containing %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(out); len(entries) > 0 {
				t.Errorf("bad input wrote %d files", len(entries))
			}
		})
	}
}

// TestExportRunStillWorking exports a run without a manifest: the records
// written so far, and says it is not finalized.
func TestExportRunStillWorking(t *testing.T) {
	t.Parallel()
	f := newRun(t, false, 10)
	out := t.TempDir()
	res, err := export.Run(t.Context(), f.st, export.Dir{Root: out}, export.Options{Run: f.run, Format: export.ImageFolder})
	if err != nil {
		t.Fatal(err)
	}
	var want []manifest.Record
	for _, r := range f.records[:10] {
		if r.Status == manifest.Succeeded {
			want = append(want, r)
		}
	}
	if res.Finalized || res.Records != len(want) {
		t.Errorf("result %+v; want %d records from an unfinalized run", res, len(want))
	}
	readImageFolder(t, out, want)
}

// failingDest lets n files be committed, then fails every commit, as a
// disk filling up or a process killed half-way would.
type failingDest struct {
	export.Dest
	mu sync.Mutex
	n  int
}

type failingFile struct {
	export.File
	d *failingDest
}

func (d *failingDest) Create(ctx context.Context, name string) (export.File, error) {
	f, err := d.Dest.Create(ctx, name)
	if err != nil {
		return nil, err
	}
	return failingFile{f, d}, nil
}

func (f failingFile) Commit() error {
	f.d.mu.Lock()
	defer f.d.mu.Unlock()
	if f.d.n == 0 {
		f.Abort()
		return errors.New("no space left on device")
	}
	f.d.n--
	return f.File.Commit()
}

func TestExportResumes(t *testing.T) {
	t.Parallel()
	f := newRun(t, true, 0)
	want := f.succeeded()
	for _, tt := range []struct {
		format export.Format
		total  int
	}{{export.ImageFolder, len(want) + 1}, {export.WebDataset, 0}} {
		t.Run(string(tt.format), func(t *testing.T) {
			t.Parallel()
			out := t.TempDir()
			opts := export.Options{Run: f.run, Format: tt.format, ShardBytes: 24 << 10, Workers: 1}
			half := 4
			_, err := export.Run(t.Context(), f.st, &failingDest{Dest: export.Dir{Root: out}, n: half}, opts)
			var se *export.StoreError
			if !errors.As(err, &se) || !se.Dest {
				t.Fatalf("interrupted export: %v; want a destination StoreError", err)
			}
			if _, err := os.Stat(filepath.Join(out, export.MetadataFile)); err == nil {
				t.Errorf("an interrupted imagefolder export left metadata.jsonl naming missing images")
			}
			var temps []string
			_ = filepath.Walk(out, func(p string, fi os.FileInfo, err error) error {
				if err == nil && strings.Contains(fi.Name(), ".tmp-") {
					temps = append(temps, p)
				}
				return nil
			})
			if len(temps) > 0 {
				t.Errorf("interrupted export left temporary files %v", temps)
			}
			res, err := export.Run(t.Context(), f.st, export.Dir{Root: out}, opts)
			if err != nil {
				t.Fatal(err)
			}
			if res.Kept != half || res.Written == 0 {
				t.Errorf("resumed export: %+v; want the %d files of the first attempt kept and the rest written", res, half)
			}
			if tt.format == export.ImageFolder {
				readImageFolder(t, out, want)
			} else {
				readShards(t, out, want, 24<<10)
			}
		})
	}
}

// TestExportCanceled stops an export with its context; the rerun completes.
func TestExportCanceled(t *testing.T) {
	t.Parallel()
	f := newRun(t, true, 0)
	out := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := export.Run(ctx, f.st, export.Dir{Root: out}, export.Options{Run: f.run, Format: export.WebDataset}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled export: %v", err)
	}
	if _, err := export.Run(t.Context(), f.st, export.Dir{Root: out}, export.Options{Run: f.run, Format: export.WebDataset}); err != nil {
		t.Fatal(err)
	}
	if n := readShards(t, out, f.succeeded(), export.DefaultShardBytes); n != 1 {
		t.Errorf("%d shards; want 1 under the default 1 GiB cap", n)
	}
}

// TestExportNamesExtraFiles exports with a narrower filter into a
// directory that holds a broader export: the files this export did not
// write are named, and left alone.
func TestExportNamesExtraFiles(t *testing.T) {
	t.Parallel()
	f := newRun(t, true, 0)
	for _, format := range []export.Format{export.ImageFolder, export.WebDataset} {
		out := t.TempDir()
		opts := export.Options{Run: f.run, Format: format, ShardBytes: 24 << 10}
		first, err := export.Run(t.Context(), f.st, export.Dir{Root: out}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(first.Extra) != 0 {
			t.Errorf("%s: first export names extra files %v", format, first.Extra)
		}
		opts.Characters = []string{"mara"}
		narrow, err := export.Run(t.Context(), f.st, export.Dir{Root: out}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(narrow.Extra) == 0 {
			t.Errorf("%s: a narrower export into a fuller directory names no extra files", format)
		}
		for _, name := range narrow.Extra {
			if format == export.ImageFolder && !strings.HasPrefix(name, "images/theo/") {
				t.Errorf("%s: %s named extra; only theo's images are", format, name)
			}
			if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(name))); err != nil {
				t.Errorf("%s: extra file %s was removed: %v", format, name, err)
			}
		}
	}
}
