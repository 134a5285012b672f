package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/artifact"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/store"
)

// The fan-in's first step: gathering a finished run's records (from the
// parts its folds wrote, then the records no part holds) into a local
// spool, and the sheet cells its folds packed into another.

// finalizeReaders bounds concurrent record reads during the fan-in: one
// small GET each, so the fan-in of a big run waits on the store unless
// many are in flight (on a 2-core MinIO: 2,600 reads/s at 16, 3,100 at 32).
const finalizeReaders = 32

// spoolRecords reads every task record of a run into sp, walking the
// store's listings a page at a time, finalizeReaders reads at a time.
//
// The parts the run's folds wrote (parts/<seq>.jsonl, a batch of records
// each) are read while the records are listed; then only the records no
// part holds are read, or those written since the part that holds them
// (a task retried after its record was folded): a record is never older
// than the part it is folded into, since its line is pushed for folding
// after it is stored. Where a task has several records (a part written
// twice, a record read beside its part), the spool keeps the one that
// finished last.
//
// A record or part that cannot be read because the store failed fails the
// load (the finalize is retried); a record that was read but does not
// decode is returned by key as unreadable, for run.json to report. A line
// of a part that does not decode is skipped: its task's record is read.
// It also returns how many record objects it read.
func (w *Worker) spoolRecords(ctx context.Context, run string, sp *manifest.Spool) ([]string, int, error) {
	// The records are listed while the parts are read (a listing of
	// 100,000 records takes the store seconds); the listing keeps, of each
	// record, its task id and when it was written.
	type listed struct {
		id      string
		written time.Time
	}
	var records []listed
	prefix := store.RecordsPrefix(run)
	lg, lctx := errgroup.WithContext(ctx)
	lg.Go(func() error {
		return w.walk(lctx, prefix, func(info store.Info) error {
			if id, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, prefix), ".json"); ok {
				records = append(records, listed{id, info.ModTime})
			}
			return nil
		})
	})
	folded, err := w.spoolParts(ctx, run, sp)
	if lerr := lg.Wait(); err == nil && lerr != nil {
		err = fmt.Errorf("list records: %w", lerr)
	}
	if err != nil {
		return nil, 0, err
	}
	var (
		mu         sync.Mutex
		unreadable []string
		read       int
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(finalizeReaders)
	for _, rec := range records {
		if at, ok := folded[rec.id]; ok && rec.written.Before(at) {
			continue // the part that holds it was written after it
		}
		key := prefix + rec.id + ".json"
		g.Go(func() error {
			raw, err := w.cfg.Store.Get(gctx, key)
			if err != nil {
				return fmt.Errorf("read record %s: %w", key, err)
			}
			err = sp.Add(raw)
			mu.Lock()
			defer mu.Unlock()
			read++
			if errors.Is(err, manifest.ErrUnreadable) {
				unreadable = append(unreadable, key)
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, err
	}
	slices.Sort(unreadable)
	return unreadable, read, nil
}

// foldedReaders bounds concurrent part reads: a part is about 1 MB.
const foldedReaders = 4

// spoolParts reads the run's parts into sp and returns, for each task a
// part holds, when the latest part holding it was written.
func (w *Worker) spoolParts(ctx context.Context, run string, sp *manifest.Spool) (map[string]time.Time, error) {
	var (
		mu     sync.Mutex
		folded = map[string]time.Time{}
		bad    int
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(foldedReaders)
	err := w.walk(gctx, store.PartsPrefix(run), func(info store.Info) error {
		if !strings.HasSuffix(info.Key, ".jsonl") {
			return nil
		}
		g.Go(func() error {
			raw, err := w.cfg.Store.Get(gctx, info.Key)
			if err != nil {
				return fmt.Errorf("read part %s: %w", info.Key, err)
			}
			for line := range bytes.Lines(raw) {
				if len(bytes.TrimSpace(line)) == 0 {
					continue
				}
				id, err := sp.AddTask(line)
				mu.Lock()
				switch {
				case errors.Is(err, manifest.ErrUnreadable):
					bad++
				case err == nil && info.ModTime.After(folded[id]):
					folded[id] = info.ModTime
				}
				mu.Unlock()
				if err != nil && !errors.Is(err, manifest.ErrUnreadable) {
					return err
				}
			}
			return nil
		})
		return gctx.Err()
	})
	if werr := g.Wait(); werr != nil {
		return nil, werr
	}
	if err != nil {
		return nil, fmt.Errorf("list parts: %w", err)
	}
	if bad > 0 {
		w.log.WarnContext(ctx, "lines of parts that do not decode: their records are read instead", "run_id", run, "lines", bad)
	}
	return folded, nil
}

// readCells reads the run's cell packs (see artifact.PackCells) into
// cells, foldedReaders at a time. A pack gone, or not a pack, is skipped
// (logged): its cells are read one by one.
func (w *Worker) readCells(ctx context.Context, run string, cells *artifact.Cells) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(foldedReaders)
	err := w.walk(gctx, store.CellsPrefix(run), func(info store.Info) error {
		g.Go(func() error {
			raw, err := w.cfg.Store.Get(gctx, info.Key)
			if errors.Is(err, store.ErrNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("read cell pack %s: %w", info.Key, err)
			}
			if err := cells.AddPack(raw); err != nil {
				w.log.WarnContext(gctx, "cell pack unreadable: its cells are read one by one", "run_id", run, "key", info.Key, "err", err)
			}
			return nil
		})
		return gctx.Err()
	})
	if werr := g.Wait(); werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("list cell packs: %w", err)
	}
	return nil
}

// walker is a store that lists a page at a time (store.S3, store.Dir).
type walker interface {
	Walk(ctx context.Context, prefix string, fn func(store.Info) error) error
}

// walk calls fn with every object under prefix, a listing page at a time
// when the store can.
func (w *Worker) walk(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if wk, ok := w.cfg.Store.(walker); ok {
		return wk.Walk(ctx, prefix, fn)
	}
	infos, err := w.cfg.Store.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}
