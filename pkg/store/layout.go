package store

import (
	"fmt"
	"path"
)

// Object keys, shared by the bucket and the local directory (see design.md,
// "Storage layout"). Every path element comes from a validated spec id, so
// keys never contain "..", a leading slash or control characters.

// RefKey is a content-addressed reference image.
func RefKey(sha256hex, ext string) string { return "refs/" + sha256hex + "." + ext }

// RunPrefix is the prefix of everything a run stores.
func RunPrefix(run string) string { return "runs/" + run + "/" }

// SpecKey is the spec as submitted.
func SpecKey(run string) string { return RunPrefix(run) + "spec.yaml" }

// OutputKey is one generated image.
func OutputKey(run, character, model, prompt string, variant int, ext string) string {
	return path.Join("runs", run, "outputs", character, model, prompt, fmt.Sprintf("%d.%s", variant, ext))
}

// RecordsPrefix holds one JSON record per task.
func RecordsPrefix(run string) string { return RunPrefix(run) + "records/" }

// RecordKey is one task's record.
func RecordKey(run, task string) string { return RecordsPrefix(run) + task + ".json" }

// PartsPrefix holds the run's records folded while it ran, a batch of
// records (one per line) per object.
func PartsPrefix(run string) string { return RunPrefix(run) + "parts/" }

// PartKey is the run's seq-th part.
func PartKey(run string, seq int64) string { return fmt.Sprintf("%s%06d.jsonl", PartsPrefix(run), seq) }

// CellsPrefix holds the run's sheet cells packed while it ran, one tar
// per part (see artifact.PackCells).
func CellsPrefix(run string) string { return RunPrefix(run) + "cells/" }

// CellsKey is the pack of part seq's sheet cells.
func CellsKey(run string, seq int64) string { return fmt.Sprintf("%s%06d.tar", CellsPrefix(run), seq) }

// ManifestKey is every record of the run, one JSON object per line.
func ManifestKey(run string) string { return RunPrefix(run) + "manifest.jsonl" }

// SummaryKey is the run summary.
func SummaryKey(run string) string { return RunPrefix(run) + "run.json" }

// ReportKey is the HTML comparison report.
func ReportKey(run string) string { return RunPrefix(run) + "report/index.html" }

// CacheKey indexes a stored output by the content key of the request that
// produced it, so a later run making the identical request reuses the image
// instead of paying for it again.
func CacheKey(contentKey string) string { return "cache/" + contentKey + ".json" }
