package export

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/store"
)

// load reads the run's records: the manifest when the fan-in wrote it,
// else every record written so far. A run with neither, nor a spec, is
// unknown.
func load(ctx context.Context, src Source, run string, workers int) ([]manifest.Record, bool, error) {
	raw, err := src.Get(ctx, store.ManifestKey(run))
	switch {
	case err == nil:
		records, err := manifest.ReadJSONL(bytes.NewReader(raw))
		if err != nil {
			return nil, false, srcErr("run %s: %w", run, err)
		}
		return records, true, nil
	case !isNotExist(err):
		return nil, false, srcErr("read manifest of run %s: %w", run, err)
	}

	infos, err := src.List(ctx, store.RecordsPrefix(run))
	if err != nil {
		return nil, false, srcErr("list records of run %s: %w", run, err)
	}
	if len(infos) == 0 {
		if _, err := src.Get(ctx, store.SpecKey(run)); isNotExist(err) {
			return nil, false, &InputError{Msg: fmt.Sprintf("run %s not found in the store (no manifest, records or spec under %s)", run, store.RunPrefix(run))}
		} else if err != nil {
			return nil, false, srcErr("read spec of run %s: %w", run, err)
		}
	}
	records := make([]manifest.Record, len(infos))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for i, info := range infos {
		if !strings.HasSuffix(info.Key, ".json") {
			continue
		}
		g.Go(func() error {
			raw, err := src.Get(gctx, info.Key)
			if isNotExist(err) {
				return nil // listed, then replaced: its new version is listed too or comes later
			}
			if err != nil {
				return srcErr("read record %s: %w", info.Key, err)
			}
			if err := json.Unmarshal(raw, &records[i]); err != nil {
				return srcErr("record %s: %w", info.Key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, false, err
	}
	out := records[:0]
	for _, r := range records {
		if r.Task != "" {
			out = append(out, r)
		}
	}
	out = manifest.Dedupe(out)
	manifest.Sort(out)
	return out, false, nil
}

// ids are a spec's character and model ids.
type ids struct{ characters, models []string }

// specIDs reads the ids of the run's stored spec (validated at submit).
func specIDs(ctx context.Context, src Source, run string) (ids, error) {
	raw, err := src.Get(ctx, store.SpecKey(run))
	if err != nil {
		return ids{}, err
	}
	var doc struct {
		Characters []struct {
			ID string `yaml:"id"`
		} `yaml:"characters"`
		Models []struct {
			ID string `yaml:"id"`
		} `yaml:"models"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return ids{}, err
	}
	var out ids
	for _, c := range doc.Characters {
		out.characters = append(out.characters, c.ID)
	}
	for _, m := range doc.Models {
		out.models = append(out.models, m.ID)
	}
	return out, nil
}
