package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
const fetchParallel = 32

// fullListEvery is how often a refresh lists the bucket (and compares
// sizes and times) instead of trusting the run's finished set: it catches
// a record rewritten between two refreshes, such as a retried task that
// failed and finished again.
const fullListEvery = 15 * time.Second

// recordCache keeps the records of recently viewed runs in memory. A
// refresh reads the run's finished tasks from Redis and fetches only the
// records it has not seen, so following a run costs one Redis read per
// refresh; every fullListEvery it also lists the bucket and rereads the
// records that changed. Once a run is finalized its manifest is read, in
// one request.
type recordCache struct {
	blobs Blobs
	runs  *runstate.Store
	max   int

	mu    sync.Mutex
	byRun map[string]*runRecords
}

type runRecords struct {
	mu      sync.Mutex // one refresh at a time
	used    time.Time  // for eviction, under recordCache.mu
	loaded  time.Time
	listed  time.Time // the last full listing
	final   time.Time // the FinishedAt whose manifest is loaded
	entries map[string]cachedRecord
	sorted  []manifest.Record
}

type cachedRecord struct {
	// size and mod are the object's, when it was read after a listing;
	// read is when it was read.
	size int64
	mod  time.Time
	read time.Time
	rec  manifest.Record
}

func newRecordCache(blobs Blobs, runs *runstate.Store, max int) *recordCache {
	return &recordCache{blobs: blobs, runs: runs, max: max, byRun: map[string]*runRecords{}}
}

func (c *recordCache) run(id string, now time.Time) *runRecords {
	c.mu.Lock()
	defer c.mu.Unlock()
	rr, ok := c.byRun[id]
	if !ok {
		if len(c.byRun) >= c.max {
			var oldest string
			for k, v := range c.byRun {
				if oldest == "" || v.used.Before(c.byRun[oldest].used) {
					oldest = k
				}
			}
			delete(c.byRun, oldest)
		}
		rr = &runRecords{entries: map[string]cachedRecord{}}
		c.byRun[id] = rr
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
	if rr.listed.IsZero() {
		rr.listed = now // a first load trusts the finished set
	}
	ids, err := c.runs.FinishedTasks(ctx, st.ID)
	if err != nil {
		return nil, err
	}
	if now.Sub(rr.listed) >= fullListEvery {
		if err := rr.refreshListing(ctx, c.blobs, st.ID, ids); err != nil {
			return nil, err
		}
		rr.listed = now
	} else if err := rr.refreshFinished(ctx, c.blobs, st.ID, ids); err != nil {
		return nil, err
	}
	rr.loaded, rr.final = now, time.Time{}
	return rr.sorted, nil
}

// refreshFinished fetches the records of tasks that finished since the
// last refresh and drops those of reopened tasks (a retried task's old
// record stays in the bucket until it is finished again).
func (rr *runRecords) refreshFinished(ctx context.Context, blobs Blobs, run string, ids []string) error {
	next := make(map[string]cachedRecord, len(ids))
	var stale []store.Info
	for _, id := range ids {
		key := store.RecordKey(run, id)
		if old, ok := rr.entries[key]; ok {
			next[key] = old
			continue
		}
		stale = append(stale, store.Info{Key: key})
	}
	return rr.update(ctx, blobs, next, stale)
}

// refreshListing lists the run's records and rereads those of finished
// tasks that are new or changed.
func (rr *runRecords) refreshListing(ctx context.Context, blobs Blobs, run string, ids []string) error {
	infos, err := blobs.List(ctx, store.RecordsPrefix(run))
	if err != nil {
		return fmt.Errorf("list records of %s: %w", run, err)
	}
	finished := make(map[string]bool, len(ids))
	for _, id := range ids {
		finished[store.RecordKey(run, id)] = true
	}
	next := make(map[string]cachedRecord, len(infos))
	var stale []store.Info
	for _, info := range infos {
		if !finished[info.Key] {
			continue // not finished yet, or reopened by a retry
		}
		if old, ok := rr.entries[info.Key]; ok && unchanged(old, info) {
			old.size, old.mod = info.Size, info.ModTime
			next[info.Key] = old
			continue
		}
		stale = append(stale, info)
	}
	return rr.update(ctx, blobs, next, stale)
}

// unchanged reports whether a cached record is the listed object: the
// same size and time, or, for a record read without a listing, written
// well before it was read (a second covers the store's clock being ahead).
func unchanged(c cachedRecord, info store.Info) bool {
	if c.mod.IsZero() {
		return info.ModTime.Before(c.read.Add(-time.Second))
	}
	return c.size == info.Size && c.mod.Equal(info.ModTime)
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

// update reads the stale records into next and makes next the cache.
func (rr *runRecords) update(ctx context.Context, blobs Blobs, next map[string]cachedRecord, stale []store.Info) error {
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
			fetched[i] = cachedRecord{size: info.Size, mod: info.ModTime, read: time.Now(), rec: rec}
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
