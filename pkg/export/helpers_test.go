package export_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/likeness-run/likeness/pkg/export"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/store"
)

// fixture is a run stored the way workers and the fan-in store it.
type fixture struct {
	st      *store.Dir
	run     string
	records []manifest.Record // every record, sorted
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// noisePNG is a PNG of random pixels, so sizes differ and shards split.
func noisePNG(t *testing.T, rng *rand.Rand, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.IntN(256))
	}
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = 255
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newRun stores a run of 2 characters × 2 prompts × 2 models × 3
// variants: 24 tasks, 3 failed and 1 skipped. finalized writes the
// manifest; otherwise only the records of the first done tasks exist.
func newRun(t *testing.T, finalized bool, done int) fixture {
	t.Helper()
	ctx := context.Background()
	st, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{st: st, run: "exp-1a2b"}
	spec := "version: 1\nname: exp\ncharacters:\n  - {id: mara, reference: refs/mara.png}\n  - {id: theo, reference: refs/theo.png}\n  - {id: zoe, reference: refs/zoe.png}\nmodels:\n  - {id: kontext, model: sim:kontext}\n  - {id: seededit, model: sim:seededit}\n"
	if err := st.Put(ctx, store.SpecKey(f.run), []byte(spec), "application/yaml"); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n := 0
	for _, c := range []string{"mara", "theo"} {
		for _, p := range []string{"piano", "rain"} {
			for _, m := range []string{"kontext", "seededit"} {
				for v := range 3 {
					n++
					r := manifest.Record{
						Run: f.run, Task: fmt.Sprintf("%016x", 0xabc000+n), Character: c, Prompt: p,
						PromptText: fmt.Sprintf("%s is %s, \"quoted\" & <b>", c, p), Model: m, ModelRef: "sim:" + m,
						Variant: v, Seed: int64(1000 + n), Status: manifest.Succeeded, Attempts: 1, CostUSD: 0.04,
						FinishedAt: time.Date(2026, 3, 14, 9, 0, n, 0, time.UTC),
					}
					if n%4 == 0 {
						r.Tags = []string{"music", p}
					}
					switch n {
					case 5, 11, 17:
						r.Status, r.ErrorClass, r.Error, r.CostUSD = manifest.Failed, "SAFETY", "flagged", 0
					case 20:
						r.Status, r.CostUSD, r.Attempts = manifest.SkippedBudget, 0, 0
					default:
						data := noisePNG(t, rng, 40+n, 30+n)
						r.OutputKey = store.OutputKey(f.run, c, m, p, v, "png")
						r.SHA256, r.Bytes, r.ContentType = hexSHA(data), int64(len(data)), "image/png"
						r.Width, r.Height = 40+n, 30+n
						if err := st.Put(ctx, r.OutputKey, data, "image/png"); err != nil {
							t.Fatal(err)
						}
					}
					f.records = append(f.records, r)
				}
			}
		}
	}
	manifest.Sort(f.records)
	if finalized {
		var buf bytes.Buffer
		if err := manifest.WriteJSONL(&buf, f.records); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, store.ManifestKey(f.run), buf.Bytes(), "application/x-ndjson"); err != nil {
			t.Fatal(err)
		}
		done = len(f.records)
	}
	for _, r := range f.records[:done] {
		raw, _ := json.Marshal(r)
		if err := st.Put(ctx, store.RecordKey(f.run, r.Task), raw, "application/json"); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f fixture) succeeded() []manifest.Record {
	var out []manifest.Record
	for _, r := range f.records {
		if r.Status == manifest.Succeeded {
			out = append(out, r)
		}
	}
	return out
}

func compileMetadataSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := jsonschema.NewCompiler().Compile("testdata/metadata.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

// checkMetadata validates one metadata object against the schema and
// decodes it.
func checkMetadata(t *testing.T, sch *jsonschema.Schema, line []byte) export.Metadata {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		t.Fatalf("metadata %s: %v", line, err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Errorf("metadata does not match the schema: %v\n%s", err, line)
	}
	var m export.Metadata
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkImage decodes an exported image and compares it with its record.
func checkImage(t *testing.T, name string, data []byte, r manifest.Record) {
	t.Helper()
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Errorf("%s does not decode: %v", name, err)
		return
	}
	if format != "png" || img.Bounds().Dx() != r.Width || img.Bounds().Dy() != r.Height {
		t.Errorf("%s: %s %v; record says png %dx%d", name, format, img.Bounds().Size(), r.Width, r.Height)
	}
	if hexSHA(data) != r.SHA256 {
		t.Errorf("%s: sha256 differs from its record's", name)
	}
}

func byTask(records []manifest.Record) map[string]manifest.Record {
	m := map[string]manifest.Record{}
	for _, r := range records {
		m[r.Task] = r
	}
	return m
}

// readImageFolder reads an imagefolder export back as Hugging Face's
// loader would: metadata.jsonl, then each file_name beside it.
func readImageFolder(t *testing.T, dir string, want []manifest.Record) {
	t.Helper()
	sch := compileMetadataSchema(t)
	raw, err := os.ReadFile(filepath.Join(dir, export.MetadataFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
	if len(lines) != len(want) {
		t.Fatalf("metadata.jsonl has %d lines, want %d", len(lines), len(want))
	}
	records := byTask(want)
	for _, line := range lines {
		m := checkMetadata(t, sch, line)
		r, ok := records[m.Task]
		if !ok {
			t.Errorf("metadata names task %s, not exported", m.Task)
			continue
		}
		delete(records, m.Task)
		if m.FileName == "" || m.Text != r.PromptText || m.Character != r.Character || m.Model != r.Model || m.Seed != r.Seed || m.CostUSD != r.CostUSD || !slices.Equal(m.Tags, append([]string{}, r.Tags...)) {
			t.Errorf("metadata %s does not match its record %+v", line, r)
		}
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(m.FileName)))
		if err != nil {
			t.Errorf("file_name %s: %v", m.FileName, err)
			continue
		}
		checkImage(t, m.FileName, data, r)
	}
}

// readShards reads WebDataset shards back with archive/tar.
func readShards(t *testing.T, dir string, want []manifest.Record, capBytes int64) int {
	t.Helper()
	sch := compileMetadataSchema(t)
	shards, _ := filepath.Glob(filepath.Join(dir, "shard-*.tar"))
	if len(shards) == 0 {
		t.Fatal("no shards")
	}
	records := byTask(want)
	for _, shard := range shards {
		fi, err := os.Stat(shard)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(shard)
		if err != nil {
			t.Fatal(err)
		}
		members := map[string]map[string][]byte{} // key -> ext -> data
		var order []string
		tr := tar.NewReader(f)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", shard, err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			key, ext, _ := strings.Cut(h.Name, ".")
			if members[key] == nil {
				members[key] = map[string][]byte{}
				order = append(order, key)
			}
			members[key][ext] = data
		}
		f.Close()
		if fi.Size() > capBytes && len(order) > 1 {
			t.Errorf("%s is %d bytes with %d samples, over the %d cap", shard, fi.Size(), len(order), capBytes)
		}
		for _, key := range order {
			r, ok := records[key]
			if !ok {
				t.Errorf("%s: sample %s is not an exported record (or appears twice)", shard, key)
				continue
			}
			delete(records, key)
			if len(members[key]) != 2 || members[key]["png"] == nil || members[key]["json"] == nil {
				t.Errorf("%s: sample %s has members %v, want png and json", shard, key, slices.Sorted(func(yield func(string) bool) {
					for k := range members[key] {
						if !yield(k) {
							return
						}
					}
				}))
				continue
			}
			m := checkMetadata(t, sch, members[key]["json"])
			if m.Task != key || m.SHA256 != r.SHA256 || m.FileName != "" {
				t.Errorf("%s: sample %s metadata %+v", shard, key, m)
			}
			checkImage(t, shard+":"+key, members[key]["png"], r)
		}
	}
	if len(records) > 0 {
		t.Errorf("%d records not in any shard", len(records))
	}
	return len(shards)
}
