package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // outputs may be JPEG
	"strings"
	"sync"
	"time"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

// chaosAudit is what the bucket holds for a run after the chaos scenario.
type chaosAudit struct {
	records          int // record objects
	unique           int // distinct tasks among them
	duplicateRecords int // records naming a task another record names
	succeeded        int // records with status succeeded
	failedByClass    map[string]int
	missingOutputs   int // succeeded records whose output is absent or not an image
	manifestLines    int // 0 when there is no manifest
	manifestRepeats  int // manifest lines naming a task an earlier line names
}

// auditReaders bounds concurrent reads from the bucket.
const auditReaders = 8

// audit reads every record of the run, checks that each succeeded one's
// output exists and decodes as an image, and counts the manifest's lines.
func (e *env) audit(ctx context.Context, run string) (*chaosAudit, error) {
	infos, err := e.blobs.List(ctx, store.RecordsPrefix(run))
	if err != nil {
		return nil, fmt.Errorf("%w: list records: %v", ErrInfra, err)
	}
	a := &chaosAudit{records: len(infos), failedByClass: map[string]int{}}
	var (
		mu    sync.Mutex
		seen  = map[string]bool{}
		errs  []error
		wg    sync.WaitGroup
		slots = make(chan struct{}, auditReaders)
	)
	for _, info := range infos {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			rec, missing, err := e.auditRecord(ctx, info.Key)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if seen[rec.Task] {
				a.duplicateRecords++
			}
			seen[rec.Task] = true
			switch rec.Status {
			case manifest.Succeeded:
				a.succeeded++
				if missing {
					a.missingOutputs++
				}
			default:
				a.failedByClass[string(rec.Status)+" "+rec.ErrorClass]++
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	a.unique = len(seen)

	data, err := e.blobs.Get(ctx, store.ManifestKey(run))
	switch {
	case errors.Is(err, store.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%w: read manifest: %v", ErrInfra, err)
	default:
		inManifest := map[string]bool{}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			var r struct {
				Task string `json:"task"`
			}
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				return nil, fmt.Errorf("manifest line %d: %w", a.manifestLines+1, err)
			}
			a.manifestLines++
			if inManifest[r.Task] {
				a.manifestRepeats++
			}
			inManifest[r.Task] = true
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read manifest: %w", err)
		}
	}
	return a, nil
}

// auditRecord reads one record and, when it succeeded, its output:
// missing is true when the output is absent or does not decode.
func (e *env) auditRecord(ctx context.Context, key string) (rec manifest.Record, missing bool, err error) {
	data, err := e.blobs.Get(ctx, key)
	if err != nil {
		return rec, false, fmt.Errorf("%w: read record %s: %v", ErrInfra, key, err)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, false, fmt.Errorf("record %s: %w", key, err)
	}
	if rec.Status != manifest.Succeeded {
		return rec, false, nil
	}
	if rec.OutputKey == "" {
		return rec, true, nil
	}
	img, err := e.blobs.Get(ctx, rec.OutputKey)
	if errors.Is(err, store.ErrNotExist) {
		return rec, true, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("%w: read output %s: %v", ErrInfra, rec.OutputKey, err)
	}
	if _, _, err := image.Decode(bytes.NewReader(img)); err != nil {
		return rec, true, nil
	}
	return rec, false, nil
}

// runStatus reads the run's counters, retrying for up to wait while Redis
// does not answer.
func (e *env) runStatus(ctx context.Context, run string, wait time.Duration) (*runstate.Status, error) {
	deadline := time.Now().Add(wait)
	for {
		st, err := e.runs.Get(ctx, run)
		if err == nil || time.Now().After(deadline) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
