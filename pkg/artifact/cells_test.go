package artifact_test

import (
	"bytes"
	"context"
	"image/color"
	"strings"
	"sync"
	"testing"

	"github.com/likeness-run/likeness/pkg/artifact"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
)

// gettingStore counts the objects read under a prefix.
type gettingStore struct {
	*store.Dir
	mu   sync.Mutex
	gets []string
}

func (g *gettingStore) Get(ctx context.Context, key string) ([]byte, error) {
	g.mu.Lock()
	g.gets = append(g.gets, key)
	g.mu.Unlock()
	return g.Dir.Get(ctx, key)
}

func (g *gettingStore) count(prefix string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, k := range g.gets {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// packRun packs r's records in two batches, as two folds would, into a
// Cells spool.
func packRun(t *testing.T, st artifact.Blobs, r run, opt spec.Sheets) (*artifact.Cells, int) {
	t.Helper()
	cells, err := artifact.NewCells(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cells.Close() })
	half := len(r.records) / 2
	packed := 0
	for _, batch := range [][]manifest.Record{r.records[:half], r.records[half:]} {
		var pack bytes.Buffer
		n, err := artifact.PackCells(context.Background(), artifact.Config{Store: st}, r.id, batch, opt, &pack)
		if err != nil {
			t.Fatalf("PackCells: %v", err)
		}
		if err := cells.AddPack(pack.Bytes()); err != nil {
			t.Fatalf("AddPack: %v", err)
		}
		packed += n
	}
	return cells, packed
}

// Sheets drawn from packed cells are the sheets drawn from the store, and
// read no cell image from it; packing made the thumbnails the cells show,
// and an output rewritten after its batch was packed is read anew.
func TestPackedCellsDrawTheSameSheets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, c := range []struct {
		name       string
		w, h       int
		ctype      string
		thumbnails bool // the cells show thumbnails, not the outputs
	}{
		{"large outputs", 320, 240, "image/png", true},
		{"outputs that are their own thumbnails", 64, 64, "image/png", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir, err := store.NewDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			st := &gettingStore{Dir: dir}
			r := storeRunSized(t, dir, "version: 1\nname: art\n", c.w, c.h, c.ctype)
			onSheet, outputs := 0, 0
			for _, rec := range r.records {
				if artifact.OnSheet(rec, spec.Sheets{}) {
					onSheet++
				}
				if rec.OutputKey != "" {
					outputs++
				}
			}
			cells, packed := packRun(t, st, r, spec.Sheets{})
			if packed != onSheet || cells.Len() != onSheet {
				t.Fatalf("packed %d cells, spooled %d; want the %d variant-0 outputs", packed, cells.Len(), onSheet)
			}
			thumbs, err := dir.List(ctx, store.RunPrefix(r.id)+"thumbs/")
			if err != nil {
				t.Fatal(err)
			}
			want := 0 // every output's thumbnail, the fan-in's work done beforehand
			if c.thumbnails {
				want = outputs
			}
			if len(thumbs) != want {
				t.Errorf("packing made %d thumbnails; want %d", len(thumbs), want)
			}

			// One output rewritten after the packing: a retried task.
			i := 0
			for !artifact.OnSheet(r.records[i], spec.Sheets{}) {
				i++
			}
			rec := &r.records[i]
			col := color.RGBA{0x10, 0x80, 0xf0, 0xff}
			data := pngOf(t, c.w, c.h, col)
			rec.SHA256, r.colour[rec.OutputKey] = hexSHA(data), col
			if err := dir.Put(ctx, rec.OutputKey, data, "image/png"); err != nil {
				t.Fatal(err)
			}

			before := len(st.gets)
			if err := artifact.Write(ctx, artifact.Config{Store: st, Cells: cells}, r.sum, r.records); err != nil {
				t.Fatalf("Write: %v", err)
			}
			for _, ch := range []string{"mara", "theo"} {
				checkSheet(t, decodeSheet(t, dir, artifact.SheetKey(r.id, ch)), r, ch, false)
			}
			st.mu.Lock()
			gets := st.gets[before:]
			st.mu.Unlock()
			var cellReads []string
			for _, k := range gets {
				if strings.Contains(k, "/outputs/") || (strings.Contains(k, "/thumbs/") && !strings.Contains(k, "/thumbs/refs/")) {
					cellReads = append(cellReads, k)
				}
			}
			// The rewritten output is read, and the thumbnail the fan-in
			// makes of it when it needs one; nothing else.
			want = 1
			if c.thumbnails {
				want = 2
			}
			base := strings.TrimSuffix(strings.TrimPrefix(rec.OutputKey, store.RunPrefix(r.id)+"outputs/"), ".png")
			for _, k := range cellReads {
				if !strings.Contains(k, base) {
					want = -1
				}
			}
			if len(cellReads) != want {
				t.Errorf("sheets read %q; want only the rewritten output %s (and its new thumbnail)", cellReads, rec.OutputKey)
			}
		})
	}
}

// A pack that is not a tar is refused; a Cells is empty then.
func TestCellsRefuseABadPack(t *testing.T) {
	t.Parallel()
	cells, err := artifact.NewCells(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cells.Close()
	if err := cells.AddPack(bytes.Repeat([]byte("not a tar "), 100)); err == nil {
		t.Error("AddPack of a non-tar succeeded")
	}
	if _, ok := cells.Image(strings.Repeat("ab", 32)); ok || cells.Len() != 0 {
		t.Errorf("a bad pack left %d cells", cells.Len())
	}
	if err := cells.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := cells.Image("x"); ok {
		t.Error("Image after Close found a cell")
	}
}
