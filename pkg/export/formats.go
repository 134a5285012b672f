package export

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/likeness-run/likeness/pkg/manifest"
)

// Names of the files an export writes besides images and shards.
const (
	MetadataFile = "metadata.jsonl"
	RecordsFile  = "records.jsonl"
)

// Metadata is one image's line of metadata.jsonl (with FileName) and the
// <task>.json member of a WebDataset shard (without). Text is the prompt,
// the column Hugging Face's text-to-image and editing recipes read.
type Metadata struct {
	FileName    string   `json:"file_name,omitempty"`
	Text        string   `json:"text"`
	Run         string   `json:"run"`
	Task        string   `json:"task"`
	Character   string   `json:"character"`
	Prompt      string   `json:"prompt"`
	Model       string   `json:"model"`
	ModelRef    string   `json:"model_ref"`
	Variant     int      `json:"variant"`
	Seed        int64    `json:"seed"`
	Tags        []string `json:"tags"`
	CostUSD     float64  `json:"cost_usd"`
	SHA256      string   `json:"sha256"`
	Width       int      `json:"width"`
	Height      int      `json:"height"`
	ContentType string   `json:"content_type"`
}

func metadataOf(r manifest.Record, fileName string) Metadata {
	tags := r.Tags
	if tags == nil {
		tags = []string{} // a list in every row, so readers infer one type
	}
	return Metadata{
		FileName: fileName, Text: r.PromptText, Run: r.Run, Task: r.Task, Character: r.Character,
		Prompt: r.Prompt, Model: r.Model, ModelRef: r.ModelRef, Variant: r.Variant, Seed: r.Seed,
		Tags: tags, CostUSD: r.CostUSD, SHA256: r.SHA256, Width: r.Width, Height: r.Height,
		ContentType: r.ContentType,
	}
}

func encodeLine(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ext is an output's extension without the dot: png, jpg, webp.
func ext(r manifest.Record) string {
	if e := strings.TrimPrefix(path.Ext(r.OutputKey), "."); e != "" {
		return e
	}
	return "png"
}

// ImagePath is where the imagefolder format puts a record's image.
func ImagePath(r manifest.Record) string {
	return fmt.Sprintf("images/%s/%s/%s/%d.%s", r.Character, r.Model, r.Prompt, r.Variant, ext(r))
}

// writer does one export.
type writer struct {
	src  Source
	dst  Dest
	opts Options
	mu   sync.Mutex
	res  Result
}

func (w *writer) count(written bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if written {
		w.res.Written++
	} else {
		w.res.Kept++
	}
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// image reads a record's output and checks it against the record.
func (w *writer) image(ctx context.Context, r manifest.Record) ([]byte, error) {
	data, err := w.src.Get(ctx, r.OutputKey)
	if err != nil {
		return nil, srcErr("read output %s of task %s: %w", r.OutputKey, r.Task, err)
	}
	if r.SHA256 != "" && hexSum(data) != r.SHA256 {
		return nil, srcErr("output %s of task %s does not match the sha256 in its record", r.OutputKey, r.Task)
	}
	return data, nil
}

// ensureImage writes a record's image to name unless a file with its
// sha256 is there.
func (w *writer) ensureImage(ctx context.Context, name string, r manifest.Record) error {
	have, exists, err := w.hashFile(ctx, name)
	if err != nil {
		return err
	}
	if exists && r.SHA256 != "" && have == r.SHA256 {
		w.count(false)
		return nil
	}
	data, err := w.image(ctx, r)
	if err != nil {
		return err
	}
	if exists && have == hexSum(data) {
		w.count(false)
		return nil
	}
	if err := writeFile(ctx, w.dst, name, data); err != nil {
		return dstErr("write %s: %w", w.dst.Location(name), err)
	}
	w.count(true)
	return nil
}

// ensureBytes writes data to name unless the file holds exactly data.
func (w *writer) ensureBytes(ctx context.Context, name string, data []byte) error {
	have, exists, err := w.hashFile(ctx, name)
	if err != nil {
		return err
	}
	if exists && have == hexSum(data) {
		w.count(false)
		return nil
	}
	if err := writeFile(ctx, w.dst, name, data); err != nil {
		return dstErr("write %s: %w", w.dst.Location(name), err)
	}
	w.count(true)
	return nil
}

// hashFile is the sha256 of a destination file, streamed.
func (w *writer) hashFile(ctx context.Context, name string) (string, bool, error) {
	f, err := w.dst.Open(ctx, name)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, dstErr("read %s: %w", w.dst.Location(name), err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", false, dstErr("read %s: %w", w.dst.Location(name), err)
	}
	return hex.EncodeToString(h.Sum(nil)), true, nil
}

// imageFolder writes every image, then metadata.jsonl, so the metadata
// never names an image that is not there yet.
func (w *writer) imageFolder(ctx context.Context, records []manifest.Record) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.opts.Workers)
	var meta bytes.Buffer
	for _, r := range records {
		name := ImagePath(r)
		w.res.Files = append(w.res.Files, name)
		line, err := encodeLine(metadataOf(r, name))
		if err != nil {
			return fmt.Errorf("encode metadata of task %s: %w", r.Task, err)
		}
		meta.Write(line)
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err // another image failed, or the export was canceled
			}
			return w.ensureImage(ctx, name, r)
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	w.res.Files = append(w.res.Files, MetadataFile)
	return w.ensureBytes(ctx, MetadataFile, meta.Bytes())
}

// jsonl writes records.jsonl: the records as manifest lines.
func (w *writer) jsonl(ctx context.Context, records []manifest.Record) error {
	var buf bytes.Buffer
	if err := manifest.WriteJSONL(&buf, records); err != nil {
		return err
	}
	w.res.Files = append(w.res.Files, RecordsFile)
	return w.ensureBytes(ctx, RecordsFile, buf.Bytes())
}

// extra lists the files in the format's places that the export did not
// write (see Result.Extra), sorted.
func extra(ctx context.Context, dst Dest, f Format, files []string) ([]string, error) {
	wrote := make(map[string]bool, len(files))
	for _, name := range files {
		wrote[name] = true
	}
	var dirs []string // name prefixes
	match := func(string) bool { return true }
	switch f {
	case ImageFolder:
		dirs = []string{"images/"}
	case WebDataset:
		dirs = []string{"shard-"}
		match = func(name string) bool { return !strings.Contains(name, "/") && strings.HasSuffix(name, ".tar") }
	default:
		return nil, nil
	}
	var out []string
	for _, dir := range dirs {
		names, err := dst.List(ctx, dir)
		if err != nil {
			return nil, dstErr("list %s: %w", dst.Location(dir), err)
		}
		for _, name := range names {
			if !wrote[name] && match(name) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}
