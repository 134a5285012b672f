package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/sheet"
	"github.com/likeness-run/likeness/pkg/store"
)

// exportRun runs a small spec in the embedded mode and returns its output
// directory, run id and manifest records.
func exportRun(t *testing.T) (out, run string, records []manifest.Record) {
	t.Helper()
	path := writeSpec(t, `version: 1
name: export-e2e
characters:
  - {id: mara, reference: refs/mara.png}
  - {id: theo, reference: refs/theo.png}
prompts:
  - {id: piano, text: "playing the piano"}
  - {id: rain, text: "walking in the rain"}
models:
  - {id: kontext, model: "sim:kontext", params: {size: 96, latency_ms: 5}}
  - {id: flaky, model: "sim:kontext", params: {size: 96, latency_ms: 5, fail_rate: 1}}
variants: 2
max_attempts: 1
sheets: {variants: all}
`)
	out = t.TempDir()
	code, stdout, stderr := likeness(t, []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT="}, "run", path, "--out", out, "--no-progress")
	if code != exitFailures { // the flaky model fails every task
		t.Fatalf("run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	m := regexp.MustCompile(`run (\S+) finished`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no run id in %q", stdout)
	}
	run = m[1]
	raw, err := os.ReadFile(filepath.Join(out, "runs", run, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	records, err = manifest.ReadJSONL(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	return out, run, records
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestExportCommand(t *testing.T) {
	t.Parallel()
	out, run, records := exportRun(t)
	want := map[string]manifest.Record{} // by sha256
	for _, r := range records {
		if r.Status == manifest.Succeeded {
			want[r.SHA256] = r
		}
	}
	if len(want) != 8 {
		t.Fatalf("%d succeeded outputs, want 8 (the kontext half)", len(want))
	}
	env := []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT="}

	// imagefolder: every metadata line names an image that decodes and
	// matches its record.
	ds := t.TempDir()
	code, stdout, stderr := likeness(t, env, "export", run, "--from", out, "--format", "imagefolder", "--out", ds)
	if code != 0 || !strings.Contains(stdout, "exported 8 records") || !strings.Contains(stdout, "9 files written") {
		t.Fatalf("export: exit %d\n%s\n%s", code, stdout, stderr)
	}
	meta, err := os.Open(filepath.Join(ds, "metadata.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	lines := 0
	for sc := bufio.NewScanner(meta); sc.Scan(); lines++ {
		var m struct {
			FileName string `json:"file_name"`
			Text     string `json:"text"`
			SHA256   string `json:"sha256"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(ds, filepath.FromSlash(m.FileName)))
		if err != nil {
			t.Fatal(err)
		}
		r, ok := want[sha(data)]
		if _, _, derr := image.Decode(bytes.NewReader(data)); derr != nil || !ok || r.PromptText != m.Text {
			t.Errorf("%s: decode %v, matches a record %v, text %q", m.FileName, derr, ok, m.Text)
		}
	}
	if lines != 8 {
		t.Errorf("metadata.jsonl has %d lines, want 8", lines)
	}
	code, stdout, _ = likeness(t, env, "export", run, "--from", out, "--format", "imagefolder", "--out", ds)
	if code != 0 || !strings.Contains(stdout, "0 files written, 9 already there") {
		t.Errorf("second export: exit %d, %s", code, stdout)
	}
	// A narrower export into the same directory warns of theo's images.
	code, stdout, stderr = likeness(t, env, "export", run, "--from", out, "--format", "imagefolder", "--character", "mara", "--out", ds)
	if code != 0 || !strings.Contains(stdout, "exported 4 records") || !strings.Contains(stderr, "warning: 4 files in") {
		t.Errorf("narrower export: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// Without a manifest (a run still working) the records written so far
	// are exported, with a warning.
	if err := os.Rename(filepath.Join(out, "runs", run, "manifest.jsonl"), filepath.Join(out, "manifest.jsonl.bak")); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = likeness(t, env, "export", run, "--from", out, "--format", "jsonl", "--out", t.TempDir())
	if code != 0 || !strings.Contains(stderr, "is still working") || !strings.Contains(stdout, "exported 16 records") {
		t.Errorf("export of a run without manifest: exit %d\n%s\n%s", code, stdout, stderr)
	}

	// webdataset to a prefix of the real MinIO, read back with archive/tar.
	s3 := testenv.S3(t)
	bucket := fmt.Sprintf("export-cli-%d", os.Getpid())
	s3env := []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT=" + s3.Endpoint, "LIKENESS_S3_ACCESS_KEY=" + s3.AccessKey, "LIKENESS_S3_SECRET_KEY=" + s3.SecretKey}
	code, stdout, stderr = likeness(t, s3env, "export", run, "--from", out, "--format", "webdataset", "--model", "kontext", "--out", "s3://"+bucket+"/sets/a")
	if code != 0 || !strings.Contains(stdout, "exported 8 records") {
		t.Fatalf("export to s3: exit %d\n%s\n%s", code, stdout, stderr)
	}
	reader, err := store.NewS3(store.S3Config{Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	shard, err := reader.Get(t.Context(), "sets/a/shard-000000.tar")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, k := range []string{"sets/a/shard-000000.tar"} {
			_ = reader.Delete(context.Background(), k)
		}
	})
	tr := tar.NewReader(bytes.NewReader(shard))
	images := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if strings.HasSuffix(h.Name, ".png") {
			images++
			if _, ok := want[sha(data)]; !ok {
				t.Errorf("shard member %s matches no record", h.Name)
			}
		}
	}
	if images != 8 {
		t.Errorf("shard holds %d images, want 8", images)
	}
}

// TestSheetOfARun decodes the sheets a run drew with sheets: {variants:
// all} and checks their grids against the run's records: a column per
// model and variant, an image where the task succeeded and a failure mark
// where it failed.
func TestSheetOfARun(t *testing.T) {
	t.Parallel()
	out, run, records := exportRun(t)
	for _, c := range []string{"mara", "theo"} {
		f, err := os.Open(filepath.Join(out, "runs", run, "sheets", c+".png"))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("sheet of %s: %v", c, err)
		}
		// Columns in the report's order: the summary's, by model id.
		cols := []struct {
			model   string
			variant int
		}{{"flaky", 0}, {"flaky", 1}, {"kontext", 0}, {"kontext", 1}}
		prompts := []string{"piano", "rain"}
		l := (&sheet.Sheet{Columns: make([]string, len(cols)), Rows: make([]sheet.Row, len(prompts))}).Layout()
		if img.Bounds().Size() != l.Size {
			t.Fatalf("sheet of %s is %v, want %v", c, img.Bounds().Size(), l.Size)
		}
		for ri, p := range prompts {
			for ci, col := range cols {
				var rec *manifest.Record
				for i := range records {
					r := &records[i]
					if r.Character == c && r.Prompt == p && r.Model == col.model && r.Variant == col.variant {
						rec = r
					}
				}
				if rec == nil {
					t.Fatalf("no record for %s %s %v", c, p, col)
				}
				cell := l.CellRect(ri, ci)
				fill := img.At(cell.Min.X+cell.Dx()/2, cell.Min.Y+cell.Dy()*22/100)
				isFail := sameColour(fill, sheet.MarkFailed.Fill())
				if (rec.Status == manifest.Failed) != isFail {
					t.Errorf("%s sheet, %s × %s v%d: status %s, failure mark drawn %v", c, p, col.model, col.variant, rec.Status, isFail)
				}
			}
		}
	}
	index, err := os.ReadFile(filepath.Join(out, "runs", run, "report", "index.html"))
	if err != nil || !bytes.Contains(index, []byte(`href="../sheets/mara.png"`)) {
		t.Errorf("the report index does not link mara's sheet (%v)", err)
	}
}

func sameColour(a color.Color, b color.RGBA) bool {
	r, g, bl, _ := a.RGBA()
	return uint8(r>>8) == b.R && uint8(g>>8) == b.G && uint8(bl>>8) == b.B
}

func TestExportCommandErrors(t *testing.T) {
	t.Parallel()
	out, run, _ := exportRun(t)
	local := []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT="}
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"bad format", local, []string{"--format", "parquet"}, exitInput, `unknown format "parquet"`},
		{"unknown run", local, []string{"--format", "jsonl", "--run-override", "nope"}, exitInput, "run nope not found"},
		{"bad model", local, []string{"--format", "jsonl", "--model", "kontxt"}, exitInput, `--model "kontxt"`},
		{"failed images", local, []string{"--format", "imagefolder", "--status", "failed"}, exitInput, "only succeeded tasks"},
		{"bad shard size", local, []string{"--format", "webdataset", "--shard-size", "lots"}, exitInput, "--shard-size"},
		{"missing from", local, []string{"--format", "jsonl", "--from", filepath.Join(out, "nope")}, exitInput, "is not a directory"},
		{"s3 down", []string{"LIKENESS_S3_ENDPOINT=127.0.0.1:1"}, []string{"--format", "jsonl", "--out", "s3://datasets/p"}, exitInfra, "object store"},
		{"source bucket down", []string{"LIKENESS_S3_ENDPOINT=127.0.0.1:1"}, []string{"--format", "jsonl", "--no-from"}, exitInfra, "object store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := run
			args := []string{"export"}
			from := true
			for i := 0; i < len(tt.args); i++ {
				switch tt.args[i] {
				case "--run-override":
					id = tt.args[i+1]
					i++
				case "--no-from":
					from = false
				case "--from":
					from = false
					args = append(args, tt.args[i])
				default:
					args = append(args, tt.args[i])
				}
			}
			args = append(args, id)
			if from {
				args = append(args, "--from", out)
			}
			if !strings.Contains(strings.Join(args, " "), "--out") {
				args = append(args, "--out", t.TempDir())
			}
			code, stdout, stderr := likeness(t, tt.env, args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("likeness %s: exit %d, stderr %q; want exit %d mentioning %q (stdout %q)", strings.Join(args, " "), code, stderr, tt.code, tt.want, stdout)
			}
		})
	}
}
