// Package artifact writes what the fan-in (run:finalize) leaves for people
// to look at once a run's records are in: a thumbnail of every image, a
// character sheet per character and the HTML report that links them all.
//
// The fan-in writes manifest.jsonl and run.json itself, then calls Write
// with the summary and the records. Write is idempotent and cheap to repeat:
// thumbnails are named after the sha256 of the image they show, so a second
// fan-in finds them stored and makes none; sheets and report pages are
// rewritten from the same records to the same bytes. An output no larger
// than a thumbnail (see OwnThumbnail) is shown as it is. WriteFrom does
// all of it a character at a time, for a fan-in that streams its records.
// While the run runs, each fold of a batch of records calls PackCells,
// which makes the batch's thumbnails and packs the images its sheet cells
// show; the fan-in reads the packs into Cells and passes them in Config.
// Every key is below runs/<run>/:
//
//	thumbs/<character>/<model>/<prompt>/<variant>-<sha12>.jpg   output thumbnails
//	thumbs/refs/<sha12>.jpg                                     reference and inpainting thumbnails
//	sheets/<character>.png                                      character sheets
//	cells/<seq>.tar                                             sheet cells packed by a fold
//	report/index.html, report/characters/<character>/...        the report
package artifact

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
)

// Blobs is the storage Write reads images from and writes artifacts to.
// *store.S3 and *store.Dir satisfy it, as does the worker's store.
type Blobs interface {
	Put(ctx context.Context, key string, data []byte, contentType string) error
	Get(ctx context.Context, key string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]store.Info, error)
}

// Config configures Write.
type Config struct {
	// Store holds the run. Required.
	Store Blobs
	// Logger reports images that cannot be read or decoded (they are shown
	// without a thumbnail, or marked on the sheet). Default slog.Default().
	Logger *slog.Logger
	// Workers bounds the images read and thumbnailed at once. Default 8.
	Workers int
	// Sheets says what the sheets show. Default: the sheets: block of the
	// spec stored at the summary's SpecKey (variant 0 when it has none).
	Sheets *spec.Sheets
	// SheetsAtOnce bounds the sheets drawn and encoded at once, each an
	// image of up to 60 MB for a character of 400 cells. Default 2: a
	// sheet's drawing is one goroutine, so two use both cores of a small
	// machine.
	SheetsAtOnce int
	// Cells, when set, holds sheet cells packed while the run ran (see
	// PackCells): a sheet takes the cells it holds from there rather than
	// from the store.
	Cells *Cells
}

// semaphore is a sync.Locker letting cap(s) holders in at once.
type semaphore chan struct{}

func (s semaphore) Lock()   { s <- struct{}{} }
func (s semaphore) Unlock() { <-s }

// charactersAhead is how many characters' thumbnails and sheets WriteFrom
// makes at once, ahead of the report pages.
const charactersAhead = 2

func (c Config) withDefaults() Config {
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.Workers <= 0 {
		c.Workers = 8
	}
	if c.SheetsAtOnce <= 0 {
		c.SheetsAtOnce = 2
	}
	return c
}

// SheetKey is a character's sheet.
func SheetKey(run, character string) string {
	return store.RunPrefix(run) + "sheets/" + character + ".png"
}

// ThumbKey is the thumbnail of the image stored at key with the given hex
// sha256: outputs keep their place under thumbs/, references and
// inpainting images go to thumbs/refs/. The hash in the name makes a stored
// thumbnail always match its image.
func ThumbKey(run, key, sha256hex string) string {
	short := sha256hex[:min(12, len(sha256hex))]
	if rest, ok := strings.CutPrefix(key, store.RunPrefix(run)+"outputs/"); ok {
		if i := strings.LastIndexByte(rest, '.'); i > strings.LastIndexByte(rest, '/') {
			rest = rest[:i]
		}
		return store.RunPrefix(run) + "thumbs/" + rest + "-" + short + ".jpg"
	}
	return store.RunPrefix(run) + "thumbs/refs/" + short + ".jpg"
}

// Write makes the thumbnails, the character sheets and the report of the
// run s summarizes. Images that cannot be read or decoded are logged and
// shown without a thumbnail (and marked on the sheets); a store that
// cannot be written is an error, so the fan-in is retried. Records are
// deduplicated and sorted first (see manifest.Dedupe and Sort); a fan-in
// that does not hold its records calls WriteFrom.
func Write(ctx context.Context, cfg Config, s manifest.Summary, records []manifest.Record) error {
	records = manifest.Dedupe(records)
	manifest.Sort(records)
	seen := map[string]bool{}
	for _, r := range records {
		seen[r.Model] = true
	}
	return WriteFrom(ctx, cfg, s, slices.Collect(maps.Keys(seen)), func(yield func([]manifest.Record, error) bool) {
		// Records are sorted by character first: one contiguous run each.
		for i := 0; i < len(records); {
			j := i
			for j < len(records) && records[j].Character == records[i].Character {
				j++
			}
			if !yield(records[i:j], nil) {
				return
			}
			i = j
		}
	})
}

// WriteFrom is Write for a fan-in that streams its records: characters
// yields every character's records, deduplicated and sorted (see
// manifest.Sort), one character at a time in sorted order
// (manifest.Spool.Characters does), and each character's thumbnails, sheet
// and report pages are made before the next character's records are read.
// models are the models that have records. An error from characters stops
// the writing and is returned.
func WriteFrom(ctx context.Context, cfg Config, s manifest.Summary, models []string, characters iter.Seq2[[]manifest.Record, error]) error {
	if cfg.Store == nil {
		return errors.New("artifact: Config.Store is required")
	}
	if s.Run == "" {
		return errors.New("artifact: summary has no run id")
	}
	cfg = cfg.withDefaults()
	opt := sheetsOf(ctx, cfg, s)
	cols := manifest.ReportColumns(s, models)
	rw, err := manifest.NewReportWriter(s, models, manifest.ReportOptions{}, func(key string, html []byte) error {
		return cfg.Store.Put(ctx, key, html, "text/html; charset=utf-8")
	})
	if err != nil {
		return fmt.Errorf("report of run %s: %w", s.Run, err)
	}
	th := newThumbMaker(cfg, s.Run)
	// The next character's thumbnails and sheet (reads from the store,
	// drawing, PNG encoding) are made while this one's pages render,
	// charactersAhead ahead, their pages added in order. At most
	// SheetsAtOnce sheets are drawn at once (drawing): one of 220 prompts
	// is a 16,000-pixel-tall image; cells are read and finished sheets
	// stored outside it.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel() // stops what is still being made for a report that failed
		wg.Wait()
	}()
	type prepared struct {
		records []manifest.Record
		thumbs  map[string]string
		sheet   string
		err     error
	}
	drawing := make(semaphore, cfg.SheetsAtOnce)
	queue := make(chan chan prepared, charactersAhead)
	wg.Go(func() {
		defer close(queue)
		for records, err := range characters {
			done := make(chan prepared, 1)
			select {
			case queue <- done:
			case <-ctx.Done():
				return
			}
			if err != nil {
				done <- prepared{err: fmt.Errorf("records of run %s: %w", s.Run, err)}
				return
			}
			wg.Go(func() {
				p := prepared{records: records}
				if len(records) > 0 {
					p.thumbs, p.err = th.make(ctx, records)
					if p.err == nil {
						p.sheet, p.err = makeSheet(ctx, cfg, s, records, cols, opt, p.thumbs, drawing)
					}
				}
				done <- p
			})
		}
	})
	for done := range queue {
		p := <-done
		if p.err != nil {
			return p.err
		}
		if len(p.records) == 0 {
			continue
		}
		if err := rw.AddCharacter(p.records, p.thumbs, p.sheet); err != nil {
			return fmt.Errorf("report of run %s: %w", s.Run, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rw.Close(); err != nil {
		return fmt.Errorf("report of run %s: %w", s.Run, err)
	}
	return nil
}

// sheetsOf reads the spec's sheets: block, falling back to the default.
func sheetsOf(ctx context.Context, cfg Config, s manifest.Summary) spec.Sheets {
	if cfg.Sheets != nil {
		return *cfg.Sheets
	}
	if s.SpecKey == "" {
		return spec.Sheets{}
	}
	raw, err := cfg.Store.Get(ctx, s.SpecKey)
	if err != nil {
		cfg.Logger.WarnContext(ctx, "spec not readable: sheets show variant 0", "run_id", s.Run, "key", s.SpecKey, "err", err)
		return spec.Sheets{}
	}
	sh, err := spec.ParseSheets(s.SpecKey, raw)
	if err != nil {
		cfg.Logger.WarnContext(ctx, "spec sheets: block not usable: sheets show variant 0", "run_id", s.Run, "err", err)
		return spec.Sheets{}
	}
	return sh
}
