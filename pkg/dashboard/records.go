package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

// minRecordAge is how long a run's records are reused before the store is
// listed again: several tabs polling one run cost one listing per interval.
const minRecordAge = 500 * time.Millisecond

// fetchParallel is how many records are read from the store at once.
const fetchParallel = 16

// recordCache keeps the records of recently viewed runs in memory. A
// refresh lists the run's records and reads only those that are new or
// were rewritten (a retried task's, say), so following a run costs one
// listing per refresh. Once a run is finalized its manifest is read
// instead, in one request.
type recordCache struct {
	blobs Blobs
	max   int

	mu   sync.Mutex
	runs map[string]*runRecords
}

type runRecords struct {
	mu      sync.Mutex // one refresh at a time
	used    time.Time  // for eviction, under recordCache.mu
	loaded  time.Time
	final   time.Time // the FinishedAt whose manifest is loaded
	entries map[string]cachedRecord
	sorted  []manifest.Record
}

type cachedRecord struct {
	size int64
	mod  time.Time
	rec  manifest.Record
}

func newRecordCache(blobs Blobs, max int) *recordCache {
	return &recordCache{blobs: blobs, max: max, runs: map[string]*runRecords{}}
}

func (c *recordCache) run(id string, now time.Time) *runRecords {
	c.mu.Lock()
	defer c.mu.Unlock()
	rr, ok := c.runs[id]
	if !ok {
		if len(c.runs) >= c.max {
			var oldest string
			for k, v := range c.runs {
				if oldest == "" || v.used.Before(c.runs[oldest].used) {
					oldest = k
				}
			}
			delete(c.runs, oldest)
		}
		rr = &runRecords{entries: map[string]cachedRecord{}}
		c.runs[id] = rr
	}
	rr.used = now
	return rr
}

// Records returns the run's records, sorted by character, prompt, model and
// variant. The slice is shared: callers must not modify it.
func (c *recordCache) Records(ctx context.Context, st *runstate.Status, now time.Time) ([]manifest.Record, error) {
	rr := c.run(st.ID, now)
	rr.mu.Lock()
	defer rr.mu.Unlock()
	finished := st.Finalized > 0 && st.Complete() && !st.FinishedAt.IsZero()
	if finished && rr.final.Equal(st.FinishedAt) {
		return rr.sorted, nil // a finalized run's manifest does not change
	}
	if !rr.loaded.IsZero() && now.Sub(rr.loaded) < minRecordAge && !finished {
		return rr.sorted, nil
	}
	if finished {
		ok, err := rr.loadManifest(ctx, c.blobs, st.ID)
		if err != nil {
			return nil, err
		}
		if ok {
			rr.loaded, rr.final = now, st.FinishedAt
			return rr.sorted, nil
		}
	}
	if err := rr.refresh(ctx, c.blobs, st.ID); err != nil {
		return nil, err
	}
	rr.loaded, rr.final = now, time.Time{}
	return rr.sorted, nil
}

// loadManifest replaces the records with the run's manifest; false when
// there is none (yet).
func (rr *runRecords) loadManifest(ctx context.Context, blobs Blobs, run string) (bool, error) {
	raw, err := blobs.Get(ctx, store.ManifestKey(run))
	if errors.Is(err, store.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read manifest of %s: %w", run, err)
	}
	recs, err := manifest.ReadJSONL(bytes.NewReader(raw))
	if err != nil {
		return false, fmt.Errorf("manifest of %s: %w", run, err)
	}
	recs = manifest.Dedupe(recs)
	manifest.Sort(recs)
	rr.sorted = recs
	rr.entries = map[string]cachedRecord{} // the next listing reads afresh
	return true, nil
}

// refresh lists the run's records and reads the new and changed ones.
func (rr *runRecords) refresh(ctx context.Context, blobs Blobs, run string) error {
	infos, err := blobs.List(ctx, store.RecordsPrefix(run))
	if err != nil {
		return fmt.Errorf("list records of %s: %w", run, err)
	}
	next := make(map[string]cachedRecord, len(infos))
	var stale []store.Info
	for _, info := range infos {
		if !strings.HasSuffix(info.Key, ".json") {
			continue
		}
		if old, ok := rr.entries[info.Key]; ok && old.size == info.Size && old.mod.Equal(info.ModTime) {
			next[info.Key] = old
			continue
		}
		stale = append(stale, info)
	}
	fetched := make([]cachedRecord, len(stale))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fetchParallel)
	for i, info := range stale {
		g.Go(func() error {
			raw, err := blobs.Get(gctx, info.Key)
			if errors.Is(err, store.ErrNotExist) {
				return nil // removed by a retry since the listing
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", info.Key, err)
			}
			var rec manifest.Record
			if err := json.Unmarshal(raw, &rec); err != nil {
				return fmt.Errorf("decode %s: %w", info.Key, err)
			}
			fetched[i] = cachedRecord{size: info.Size, mod: info.ModTime, rec: rec}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	changed := len(stale) > 0 || len(next) != len(rr.entries)
	for i, info := range stale {
		if fetched[i].rec.Task != "" {
			next[info.Key] = fetched[i]
		}
	}
	rr.entries = next
	if changed || rr.sorted == nil {
		sorted := make([]manifest.Record, 0, len(next))
		for _, e := range next {
			sorted = append(sorted, e.rec)
		}
		manifest.Sort(sorted)
		rr.sorted = sorted
	}
	return nil
}
