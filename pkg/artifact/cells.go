package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
)

// Sheet cells made while the run runs. A sheet of 100 prompts and 4
// models shows 400 images, each its own GET at the fan-in: 20,000 GETs for
// a run of 50 characters, which cost the object store more CPU than the
// sheets cost the fan-in. So each fold of a batch of records (see the
// worker's fold step) also packs the images the sheets will show of that
// batch, a tar stored at store.CellsKey (runs/<run>/cells/<seq>.tar), and
// makes the batch's thumbnails; the fan-in reads the packs (one GET per batch) into
// a Cells spool on local disk, and a sheet takes its cells from there.
// A cell no pack holds is read from the store as before, so a lost or
// missing pack costs time, never an image.
//
// A pack's entries are named by the sha256 of the output they show (as its
// record gives it): an output rewritten after its batch was packed (a
// retried task) has another sha256 and is not taken from the old pack.

// OnSheet reports whether a record's output is a cell of its character's
// sheet, as opt says what the sheets show.
func OnSheet(r manifest.Record, opt spec.Sheets) bool {
	return r.Status == manifest.Succeeded && r.OutputKey != "" && r.SHA256 != "" && (opt.All() || r.Variant == 0)
}

// SheetsOf reads the sheets: block of the spec stored at specKey; variant
// 0 only (the default) when there is none or it cannot be read (logged).
func SheetsOf(ctx context.Context, cfg Config, run, specKey string) spec.Sheets {
	return sheetsOf(ctx, cfg.withDefaults(), manifest.Summary{Run: run, SpecKey: specKey})
}

// PackCells makes the thumbnails of a batch of run's records (the fan-in
// then finds them stored and makes none) and writes to w, as a tar, the
// image each cell of the sheets opt describes shows: the thumbnail, or the
// output when it is its own thumbnail. It returns how many cells it packed. An image that is
// missing or not decodable is left out (the fan-in marks it); a store that
// cannot be read or written is an error.
func PackCells(ctx context.Context, cfg Config, run string, records []manifest.Record, opt spec.Sheets, w io.Writer) (int, error) {
	if cfg.Store == nil {
		return 0, errors.New("artifact: Config.Store is required")
	}
	cfg = cfg.withDefaults()
	type cell struct {
		sha  string
		data []byte
	}
	var (
		mu    sync.Mutex
		cells []cell
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Workers)
	for _, r := range records {
		if r.Status != manifest.Succeeded || r.OutputKey == "" || r.SHA256 == "" {
			continue
		}
		onSheet := OnSheet(r, opt)
		own := OwnThumbnail(r)
		if own && !onSheet {
			continue
		}
		g.Go(func() error {
			var (
				data []byte
				err  error
			)
			if own {
				data, err = cfg.Store.Get(gctx, r.OutputKey)
				if errors.Is(err, store.ErrNotExist) {
					return nil
				}
			} else {
				// Made afresh: a batch just folded has no thumbnails yet,
				// and one made again is the same object.
				data, err = makeThumbBytes(gctx, cfg, run, thumbJob{key: r.OutputKey, sha: r.SHA256})
			}
			if err != nil || data == nil || !onSheet {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			cells = append(cells, cell{r.SHA256, data})
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	tw := tar.NewWriter(w)
	for _, c := range cells {
		if err := tw.WriteHeader(&tar.Header{Name: c.sha, Mode: 0o644, Size: int64(len(c.data)), Typeflag: tar.TypeReg}); err != nil {
			return 0, fmt.Errorf("pack cells: %w", err)
		}
		if _, err := tw.Write(c.data); err != nil {
			return 0, fmt.Errorf("pack cells: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return 0, fmt.Errorf("pack cells: %w", err)
	}
	return len(cells), nil
}

// Cells holds the sheet cells of a run's packs for its fan-in, in a
// temporary file: memory keeps where each image is. It is safe for
// concurrent use.
type Cells struct {
	mu    sync.Mutex
	f     *os.File
	off   int64
	index map[string]cellSpan
}

type cellSpan struct {
	off int64
	n   int
}

// NewCells starts an empty Cells in a new temporary file in dir
// (os.TempDir() when dir is empty).
func NewCells(dir string) (*Cells, error) {
	f, err := os.CreateTemp(dir, "likeness-cells-*")
	if err != nil {
		return nil, fmt.Errorf("spool sheet cells: %w", err)
	}
	return &Cells{f: f, index: map[string]cellSpan{}}, nil
}

// AddPack adds the cells of one pack (see PackCells). A pack that is not a
// tar is an error; the cells read before it stay.
func (c *Cells) AddPack(pack []byte) error {
	tr := tar.NewReader(bytes.NewReader(pack))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read cell pack: %w", err)
		}
		if h.Typeflag != tar.TypeReg || strings.ContainsAny(h.Name, "/\\") {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("read cell pack: %w", err)
		}
		if err := c.add(h.Name, data); err != nil {
			return err
		}
	}
}

func (c *Cells) add(sha string, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return errors.New("spool sheet cells: closed")
	}
	if _, err := c.f.WriteAt(data, c.off); err != nil {
		return fmt.Errorf("spool sheet cells: %w", err)
	}
	c.index[sha] = cellSpan{c.off, len(data)}
	c.off += int64(len(data))
	return nil
}

// Len is the number of cells held.
func (c *Cells) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.index)
}

// Image returns the encoded image of the cell showing the output with the
// given sha256, if a pack held it.
func (c *Cells) Image(sha string) ([]byte, bool) {
	c.mu.Lock()
	span, ok := c.index[sha]
	f := c.f
	c.mu.Unlock()
	if !ok || f == nil {
		return nil, false
	}
	data := make([]byte, span.n)
	if _, err := f.ReadAt(data, span.off); err != nil {
		return nil, false
	}
	return data, true
}

// Close removes the file.
func (c *Cells) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	name := c.f.Name()
	err := c.f.Close()
	c.f = nil
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	return err
}
