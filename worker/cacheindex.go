package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

// The cache index (pkg/runstate, cache.go) says which content keys have a
// stored output, so a fresh task asks Redis, not the bucket, whether its
// output was already paid for. The bucket's records are the truth the
// index is built from: when a task finds that the index was never built
// for this bucket (a new or emptied Redis: the embedded mode starts one
// per `likeness run`), the worker rebuilds it before it trusts a miss, and
// `likeness cache reindex` does the same by hand.

// ReindexStats is what a rebuild of the cache index found.
type ReindexStats struct {
	// Records is how many succeeded task records were indexed; Legacy how
	// many entries of the bucket's older cache/ directory.
	Records, Legacy int
	// Runs is how many runs' records were read.
	Runs int
}

// reindexReaders bounds concurrent record reads during a rebuild.
const reindexReaders = 16

// RebuildCacheIndex indexes every output the bucket holds a succeeded
// record for (a finished run's manifest.jsonl when it is newer than all
// of its records, else the records one by one), plus the entries of the
// older cache/ directory, then marks the index built for the bucket
// (storeName, see StoreName). Entries already in the index stay.
func RebuildCacheIndex(ctx context.Context, blobs Blobs, runs *runstate.Store, storeName string) (ReindexStats, error) {
	var stats ReindexStats
	legacy, err := blobs.List(ctx, "cache/")
	if err != nil {
		return stats, fmt.Errorf("list cache/: %w", err)
	}
	var entries []runstate.CacheEntry
	for _, info := range legacy {
		name := strings.TrimSuffix(strings.TrimPrefix(info.Key, "cache/"), ".json")
		if len(name) == 64 && !strings.Contains(name, "/") {
			entries = append(entries, runstate.CacheEntry{ContentKey: name, Ref: runstate.CacheRef{Legacy: true}})
		}
	}
	stats.Legacy = len(entries)

	objects, err := blobs.List(ctx, "runs/")
	if err != nil {
		return stats, fmt.Errorf("list runs/: %w", err)
	}
	type runObjects struct {
		manifest *store.Info
		records  []store.Info
	}
	byRun := map[string]*runObjects{}
	var order []string
	for i, info := range objects {
		parts := strings.Split(info.Key, "/")
		if len(parts) < 3 {
			continue
		}
		ro := byRun[parts[1]]
		if ro == nil {
			ro = &runObjects{}
			byRun[parts[1]] = ro
			order = append(order, parts[1])
		}
		switch {
		case len(parts) == 3 && parts[2] == "manifest.jsonl":
			ro.manifest = &objects[i]
		case len(parts) == 4 && parts[2] == "records" && strings.HasSuffix(parts[3], ".json"):
			ro.records = append(ro.records, info)
		}
	}
	var (
		mu    sync.Mutex
		found []runstate.CacheEntry
	)
	add := func(recs ...manifest.Record) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range recs {
			if r.Status == manifest.Succeeded && r.OutputKey != "" && len(r.ContentKey) == 64 && r.Run != "" && r.Task != "" {
				found = append(found, runstate.CacheEntry{ContentKey: r.ContentKey, Ref: runstate.CacheRef{Run: r.Run, Task: r.Task}})
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(reindexReaders)
	for _, run := range order {
		ro := byRun[run]
		if len(ro.records) == 0 {
			continue
		}
		stats.Runs++
		if ro.manifest != nil && !newerThan(ro.records, ro.manifest.ModTime) {
			key := ro.manifest.Key
			g.Go(func() error {
				raw, err := blobs.Get(gctx, key)
				if err != nil {
					return fmt.Errorf("read %s: %w", key, err)
				}
				recs, err := manifest.ReadJSONL(bytes.NewReader(raw))
				if err != nil {
					return fmt.Errorf("decode %s: %w", key, err)
				}
				add(recs...)
				return nil
			})
			continue
		}
		for _, info := range ro.records {
			g.Go(func() error {
				raw, err := blobs.Get(gctx, info.Key)
				if errors.Is(err, store.ErrNotExist) {
					return nil // deleted since the listing
				}
				if err != nil {
					return fmt.Errorf("read %s: %w", info.Key, err)
				}
				var rec manifest.Record
				if json.Unmarshal(raw, &rec) == nil {
					add(rec)
				}
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return stats, err
	}
	stats.Records = len(found)
	// Records after legacy entries: where both describe an output, the
	// record wins.
	if err := runs.CacheAddAll(ctx, append(entries, found...)); err != nil {
		return stats, err
	}
	if err := runs.MarkCacheIndexed(ctx, storeName); err != nil {
		return stats, err
	}
	return stats, nil
}

func newerThan(infos []store.Info, t time.Time) bool {
	for _, i := range infos {
		if i.ModTime.After(t) {
			return true
		}
	}
	return false
}

// StoreName names an object store for the cache index's built mark: its
// location (s3://bucket/cache, or the directory's cache path).
func StoreName(blobs Blobs) string {
	if l, ok := blobs.(interface{ Location(string) string }); ok {
		if s := l.Location("cache"); s != "" {
			return s
		}
	}
	return "store"
}

// indexGate runs at most one rebuild of the cache index at a time in this
// worker; tasks that found the index missing wait for it.
type indexGate struct {
	mu       sync.Mutex
	building chan struct{} // closed when the rebuild in progress ends
	err      error         // its result, once building is closed
	// seen is set once this worker has found the index built before it
	// looked an entry up. Until then a miss is asked again: Begin reads
	// the built mark beside the lookup in one pipeline, which is not
	// atomic (and on a Cluster not even ordered), so a rebuild may end
	// between the two and a miss read before it would be trusted.
	seen atomic.Bool
}

// indexWait is how long a task waits for a rebuild inside its delivery
// before it is requeued to wait more.
const indexWait = 2 * time.Second

var errIndexing = errors.New("the cache index is being rebuilt from the bucket")

// awaitCacheIndex makes sure the cache index is built for this worker's
// bucket (rebuilding it if no other worker of the fleet is) and waits for
// it, up to indexWait.
func (w *Worker) awaitCacheIndex(ctx context.Context) error {
	g := &w.index
	g.mu.Lock()
	ch := g.building
	select {
	case <-ch:
		ch = nil // the last rebuild ended: the index went missing since
	default:
	}
	if ch == nil {
		ch = make(chan struct{})
		g.building = ch
		go w.rebuildIndex(ch)
	}
	g.mu.Unlock()
	t := time.NewTimer(indexWait)
	defer t.Stop()
	select {
	case <-ch:
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.err
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return &waitError{Wait: time.Second, Err: errIndexing}
	}
}

// rebuildIndex rebuilds the index unless it is built, or waits while
// another worker of the fleet rebuilds it; it closes done at the end.
func (w *Worker) rebuildIndex(done chan struct{}) {
	ctx := context.Background()
	log := w.log.With("store", w.storeName)
	err := func() error {
		for {
			ok, err := w.cfg.Runs.CacheIndexed(ctx, w.storeName)
			if err != nil || ok {
				return err
			}
			got, err := w.cfg.Runs.TryLock(ctx, "cache-reindex", w.cfg.ID, 10*time.Minute)
			if err != nil {
				return err
			}
			if !got {
				time.Sleep(200 * time.Millisecond) // another worker rebuilds it
				continue
			}
			log.Warn("the cache index is missing in Redis: rebuilding it from the bucket's records before trusting a miss")
			start := time.Now()
			stats, err := RebuildCacheIndex(ctx, w.cfg.Store, w.cfg.Runs, w.storeName)
			w.cfg.Runs.Unlock(ctx, "cache-reindex", w.cfg.ID)
			if err != nil {
				return fmt.Errorf("rebuild the cache index: %w", err)
			}
			log.Info("cache index rebuilt", "outputs", stats.Records, "legacy_entries", stats.Legacy,
				"runs", stats.Runs, "took", time.Since(start).Round(time.Millisecond))
			return nil
		}
	}()
	w.index.mu.Lock()
	w.index.err = err
	w.index.mu.Unlock()
	close(done)
}
