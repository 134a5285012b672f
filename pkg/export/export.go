// Package export hands a run's outputs on as a dataset: an imagefolder
// that Hugging Face `datasets` loads as is, WebDataset tar shards, or one
// JSON line per record.
//
// Export runs after (or while) a run works: it reads the run's records from
// its store (runs/<run>/manifest.jsonl once the fan-in wrote it, else the
// records/ the workers have written so far, so a run still working exports
// what has finished) and copies the images into the destination, a local
// directory or an S3 prefix. It is idempotent and resumable without any
// marker file: every file it would write is first looked for in the
// destination and kept when its content matches (images by the sha256 in
// their record, metadata and shards by their exact bytes); anything
// missing or different is written again, atomically, so an interrupted
// export leaves no half file and the next one completes it.
package export

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/store"
)

// Format is a dataset layout.
type Format string

// Formats.
const (
	// ImageFolder is images/<character>/<model>/<prompt>/<variant>.<ext>
	// plus metadata.jsonl with a file_name per image: the layout Hugging
	// Face's "imagefolder" builder reads.
	ImageFolder Format = "imagefolder"
	// WebDataset is shard-000000.tar, shard-000001.tar... each holding
	// <task>.<ext> and <task>.json per image, each shard at most
	// Options.ShardBytes.
	WebDataset Format = "webdataset"
	// JSONL is records.jsonl: one manifest record per line, every status.
	JSONL Format = "jsonl"
)

// Formats lists the formats, for messages.
func Formats() []Format { return []Format{ImageFolder, WebDataset, JSONL} }

// ParseFormat returns the format named s.
func ParseFormat(s string) (Format, error) {
	f := Format(s)
	if !slices.Contains(Formats(), f) {
		return "", &InputError{Msg: fmt.Sprintf("unknown format %q: want imagefolder, webdataset or jsonl", s)}
	}
	return f, nil
}

// images reports whether the format exports images (and so only records
// that have one).
func (f Format) images() bool { return f != JSONL }

// DefaultShardBytes is Options.ShardBytes's default: 1 GiB.
const DefaultShardBytes = 1 << 30

// Options say what to export.
type Options struct {
	// Run is the run id. Required.
	Run    string
	Format Format
	// Statuses keeps records in these states. Default: succeeded for the
	// image formats (only those records have an image; asking for another
	// state is an error), every state for JSONL.
	Statuses []manifest.Status
	// Models and Characters keep records of these ids; empty keeps all.
	// An id the run does not have is an error.
	Models, Characters []string
	// ShardBytes caps a WebDataset shard's size; a single image larger
	// than the cap gets a shard of its own. Default DefaultShardBytes.
	ShardBytes int64
	// Workers bounds images read and checked at once. Default 8.
	Workers int
}

// Result says what an export did.
type Result struct {
	// Records is the number of records exported.
	Records int
	// Written and Kept count destination files written and files found
	// already there with the right content.
	Written, Kept int
	// Finalized is false when the run has no manifest yet: the export holds
	// the tasks finished so far.
	Finalized bool
	// Files lists the destination's files in the order written or checked.
	Files []string
	// Extra lists files already in the destination, in this format's
	// places (images/, metadata.jsonl, shard-*.tar), that this export did
	// not write, such as those of an earlier export with other filters: a
	// dataset loader would read them too. They are left alone.
	Extra []string
}

// InputError is bad input: an unknown run, format or filter value.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

// StoreError is a failure of the run's store or of the destination: the
// caller's infrastructure, not its input.
type StoreError struct {
	// Dest is true when the destination failed, false for the run's store.
	Dest bool
	Err  error
}

func (e *StoreError) Error() string { return e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

func srcErr(format string, args ...any) error {
	return &StoreError{Err: fmt.Errorf(format, args...)}
}

func dstErr(format string, args ...any) error {
	return &StoreError{Dest: true, Err: fmt.Errorf(format, args...)}
}

// Source is the run's store. *store.S3 and *store.Dir satisfy it.
type Source interface {
	Get(ctx context.Context, key string) ([]byte, error)
	List(ctx context.Context, prefix string) ([]store.Info, error)
}

func (o Options) withDefaults() Options {
	if o.ShardBytes <= 0 {
		o.ShardBytes = DefaultShardBytes
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if len(o.Statuses) == 0 {
		if o.Format.images() {
			o.Statuses = []manifest.Status{manifest.Succeeded}
		} else {
			o.Statuses = []manifest.Status{manifest.Succeeded, manifest.Failed, manifest.SkippedBudget, manifest.SkippedCanceled}
		}
	}
	return o
}

func (o Options) check() error {
	if o.Run == "" {
		return &InputError{Msg: "no run id"}
	}
	if _, err := ParseFormat(string(o.Format)); err != nil {
		return err
	}
	for _, s := range o.Statuses {
		switch s {
		case manifest.Succeeded, manifest.Failed, manifest.SkippedBudget, manifest.SkippedCanceled:
		default:
			return &InputError{Msg: fmt.Sprintf("--status %q: want succeeded, failed, skipped_budget or skipped_canceled", s)}
		}
		if o.Format.images() && s != manifest.Succeeded {
			return &InputError{Msg: fmt.Sprintf("--status %s: format %s exports images, which only succeeded tasks have (use --format jsonl for the others)", s, o.Format)}
		}
	}
	return nil
}

// Run exports the run opts names from src to dst.
func Run(ctx context.Context, src Source, dst Dest, opts Options) (Result, error) {
	opts = opts.withDefaults()
	if err := opts.check(); err != nil {
		return Result{}, err
	}
	records, finalized, err := load(ctx, src, opts.Run, opts.Workers)
	if err != nil {
		return Result{}, err
	}
	if err := checkFilters(ctx, src, opts, records); err != nil {
		return Result{}, err
	}
	records = filter(records, opts)
	w := &writer{src: src, dst: dst, opts: opts, res: Result{Records: len(records), Finalized: finalized}}
	switch opts.Format {
	case ImageFolder:
		err = w.imageFolder(ctx, records)
	case WebDataset:
		err = w.webDataset(ctx, records)
	case JSONL:
		err = w.jsonl(ctx, records)
	}
	if err == nil {
		w.res.Extra, err = extra(ctx, dst, opts.Format, w.res.Files)
	}
	return w.res, err
}

func filter(records []manifest.Record, o Options) []manifest.Record {
	out := records[:0:0]
	for _, r := range records {
		if !slices.Contains(o.Statuses, r.Status) ||
			len(o.Models) > 0 && !slices.Contains(o.Models, r.Model) ||
			len(o.Characters) > 0 && !slices.Contains(o.Characters, r.Character) {
			continue
		}
		if o.Format.images() && r.OutputKey == "" {
			continue
		}
		out = append(out, r)
	}
	return out
}

// checkFilters refuses model and character ids the run does not have,
// from its records or, for a run still working, its spec.
func checkFilters(ctx context.Context, src Source, o Options, records []manifest.Record) error {
	if len(o.Models) == 0 && len(o.Characters) == 0 {
		return nil
	}
	models, characters := map[string]bool{}, map[string]bool{}
	for _, r := range records {
		models[r.Model], characters[r.Character] = true, true
	}
	if ids, err := specIDs(ctx, src, o.Run); err == nil {
		for _, m := range ids.models {
			models[m] = true
		}
		for _, c := range ids.characters {
			characters[c] = true
		}
	}
	for _, check := range []struct {
		flag  string
		want  []string
		known map[string]bool
	}{{"--model", o.Models, models}, {"--character", o.Characters, characters}} {
		for _, id := range check.want {
			if !check.known[id] {
				return &InputError{Msg: fmt.Sprintf("%s %q: run %s has no such id (it has: %s)", check.flag, id, o.Run, strings.Join(sortedKeys(check.known), ", "))}
			}
		}
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// isNotExist matches a missing object in either store.
func isNotExist(err error) bool { return errors.Is(err, store.ErrNotExist) }
