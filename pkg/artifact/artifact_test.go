package artifact_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/artifact"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/sheet"
	"github.com/likeness-run/likeness/pkg/store"
)

// countingStore counts the objects written under a prefix.
type countingStore struct {
	*store.Dir
	mu   sync.Mutex
	puts map[string]int
}

func (c *countingStore) Put(ctx context.Context, key string, data []byte, ct string) error {
	c.mu.Lock()
	c.puts[key]++
	c.mu.Unlock()
	return c.Dir.Put(ctx, key, data, ct)
}

func (c *countingStore) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.puts {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func pngOf(t *testing.T, w, h int, c color.RGBA) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// run is a stored run: 2 characters × 3 prompts × 2 models × 2 variants,
// each output a solid colour of its own; some tasks failed, one was
// skipped, one has no record.
type run struct {
	id      string
	records []manifest.Record
	colour  map[string]color.RGBA // output key -> colour
	sum     manifest.Summary
}

func storeRun(t *testing.T, st *store.Dir, specYAML string) run {
	t.Helper()
	return storeRunSized(t, st, specYAML, 320, 240, "")
}

// storeRunSized is storeRun with outputs of w×h, recorded with content type
// ctype.
func storeRunSized(t *testing.T, st *store.Dir, specYAML string, w, h int, ctype string) run {
	t.Helper()
	ctx := context.Background()
	r := run{id: "art-1", colour: map[string]color.RGBA{}}
	if err := st.Put(ctx, store.SpecKey(r.id), []byte(specYAML), "application/yaml"); err != nil {
		t.Fatal(err)
	}
	n := 0
	for ci, c := range []string{"mara", "theo"} {
		ref := pngOf(t, 180, 240, color.RGBA{uint8(200 + ci), 180, 0, 255})
		refKey := store.RefKey(hexSHA(ref), "png")
		if err := st.Put(ctx, refKey, ref, "image/png"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"anime", "cafe", "piano"} {
			for _, m := range []string{"kontext", "ideogram"} {
				for v := range 2 {
					n++
					rec := manifest.Record{
						Run: r.id, Task: fmt.Sprintf("%016x", n), Character: c, Prompt: p, PromptText: "the person in " + p,
						Model: m, ModelRef: "sim:" + m, Variant: v, Status: manifest.Succeeded, ReferenceKey: refKey,
						Attempts: 1, FinishedAt: time.Unix(int64(n), 0),
					}
					switch {
					case c == "mara" && p == "cafe" && m == "ideogram" && v == 0:
						rec.Status, rec.ErrorClass, rec.Error = manifest.Failed, "SAFETY", "flagged"
					case c == "theo" && p == "anime" && m == "kontext" && v == 0:
						rec.Status = manifest.SkippedBudget
					case c == "theo" && p == "piano" && m == "ideogram" && v == 0:
						continue // no record
					default:
						col := color.RGBA{uint8(n * 9), uint8(255 - n*5), uint8(n * 3 % 256), 255}
						data := pngOf(t, w, h, col)
						rec.OutputKey = store.OutputKey(r.id, c, m, p, v, "png")
						rec.SHA256, rec.Width, rec.Height, rec.Bytes, rec.ContentType = hexSHA(data), w, h, int64(len(data)), ctype
						if err := st.Put(ctx, rec.OutputKey, data, "image/png"); err != nil {
							t.Fatal(err)
						}
						r.colour[rec.OutputKey] = col
					}
					r.records = append(r.records, rec)
				}
			}
		}
	}
	r.sum = manifest.Summarize(manifest.RunMeta{Run: r.id, Name: "art", SpecKey: store.SpecKey(r.id)}, r.records)
	return r
}

func near(a color.Color, b color.RGBA, tol int) bool {
	r, g, bl, _ := a.RGBA()
	d := func(x uint32, y uint8) bool { v := int(x>>8) - int(y); return v >= -tol && v <= tol }
	return d(r, b.R) && d(g, b.G) && d(bl, b.B)
}

func decodeSheet(t *testing.T, st *store.Dir, key string) image.Image {
	t.Helper()
	data, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("sheet %s: %v", key, err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode sheet %s: %v", key, err)
	}
	return img
}

// checkSheet compares a decoded sheet's grid with the run's records:
// dimensions from the layout, an image of the record's colour in every
// succeeded cell and the right mark in every other.
func checkSheet(t *testing.T, img image.Image, r run, character string, all bool) {
	t.Helper()
	byCell := map[string]manifest.Record{}
	for _, rec := range r.records {
		byCell[fmt.Sprintf("%s/%s/%s/%d", rec.Character, rec.Prompt, rec.Model, rec.Variant)] = rec
	}
	prompts, models := []string{"anime", "cafe", "piano"}, []string{"ideogram", "kontext"}
	variants := []int{0}
	var cols []string
	if all {
		variants = []int{0, 1}
	}
	for _, m := range models {
		for range variants {
			cols = append(cols, m)
		}
	}
	layout := (&sheet.Sheet{Columns: cols, Rows: make([]sheet.Row, len(prompts))}).Layout()
	if img.Bounds().Size() != layout.Size {
		t.Fatalf("%s sheet is %v, want %v for %d rows × %d columns", character, img.Bounds().Size(), layout.Size, len(prompts), len(cols))
	}
	for ri, p := range prompts {
		for mi, m := range models {
			for vi, v := range variants {
				cell := layout.CellRect(ri, mi*len(variants)+vi)
				centre := img.At(cell.Min.X+cell.Dx()/2, cell.Min.Y+cell.Dy()/2)
				upper := img.At(cell.Min.X+cell.Dx()/2, cell.Min.Y+cell.Dy()*22/100)
				rec, ok := byCell[fmt.Sprintf("%s/%s/%s/%d", character, p, m, v)]
				var mark sheet.Mark
				switch {
				case !ok:
					mark = sheet.MarkMissing
				case rec.Status == manifest.Failed:
					mark = sheet.MarkFailed
				case rec.Status.Skipped():
					mark = sheet.MarkSkipped
				default:
					if want := r.colour[rec.OutputKey]; !near(centre, want, 8) {
						t.Errorf("%s sheet %s × %s v%d: centre %v, want the output's colour %v", character, p, m, v, centre, want)
					}
					continue
				}
				if !near(upper, mark.Fill(), 3) || !near(centre, mark.Ink(), 3) {
					t.Errorf("%s sheet %s × %s v%d: fill %v, centre %v; want mark %d (%v, %v)", character, p, m, v, upper, centre, mark, mark.Fill(), mark.Ink())
				}
			}
		}
	}
}

func TestWriteSheetsThumbsReport(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	st := &countingStore{Dir: dir, puts: map[string]int{}}
	r := storeRun(t, dir, "version: 1\nname: art\n")
	if err := artifact.Write(ctx, artifact.Config{Store: st}, r.sum, r.records); err != nil {
		t.Fatalf("Write: %v", err)
	}

	for _, c := range []string{"mara", "theo"} {
		checkSheet(t, decodeSheet(t, dir, artifact.SheetKey(r.id, c)), r, c, false)
	}

	// Thumbnails: one per output and reference, at most ThumbPX, and the
	// report shows them.
	thumbs, err := dir.List(ctx, store.RunPrefix(r.id)+"thumbs/")
	if err != nil {
		t.Fatal(err)
	}
	if want := len(r.colour) + 2; len(thumbs) != want {
		t.Errorf("%d thumbnails, want %d (outputs and references)", len(thumbs), want)
	}
	for _, info := range thumbs {
		data, _ := dir.Get(ctx, info.Key)
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("thumbnail %s: %v", info.Key, err)
		}
		if max(cfg.Width, cfg.Height) != artifact.ThumbPX && !strings.Contains(info.Key, "/refs/") {
			t.Errorf("thumbnail %s is %dx%d, want a long side of %d", info.Key, cfg.Width, cfg.Height, artifact.ThumbPX)
		}
	}
	index, err := dir.Get(ctx, store.ReportKey(r.id))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`href="../sheets/mara.png"`, `href="characters/theo/index.html"`} {
		if !bytes.Contains(index, []byte(want)) {
			t.Errorf("report index lacks %s", want)
		}
	}
	page, err := dir.Get(ctx, manifest.CharacterPageKey(r.id, "mara", 1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(page, []byte(`src="../../../thumbs/mara/kontext/anime/0-`)) {
		t.Errorf("mara's page does not show the output thumbnails")
	}

	// A second fan-in makes no thumbnail again.
	before := st.count(store.RunPrefix(r.id) + "thumbs/")
	if err := artifact.Write(ctx, artifact.Config{Store: st}, r.sum, r.records); err != nil {
		t.Fatalf("second Write: %v", err)
	}
	if after := st.count(store.RunPrefix(r.id) + "thumbs/"); after != before {
		t.Errorf("second Write stored %d thumbnails again", after-before)
	}
}

func TestWriteSheetsAllVariants(t *testing.T) {
	t.Parallel()
	dir, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := storeRun(t, dir, "version: 1\nname: art\nsheets:\n  variants: all\n")
	if err := artifact.Write(context.Background(), artifact.Config{Store: dir}, r.sum, r.records); err != nil {
		t.Fatalf("Write: %v", err)
	}
	for _, c := range []string{"mara", "theo"} {
		checkSheet(t, decodeSheet(t, dir, artifact.SheetKey(r.id, c)), r, c, true)
	}
}

// Outputs no larger than a thumbnail get none: the report and the sheets
// show the outputs themselves. References still get theirs.
func TestSmallOutputsAreTheirOwnThumbnails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := storeRunSized(t, dir, "version: 1\nname: art\n", 64, 64, "image/png")
	if err := artifact.Write(ctx, artifact.Config{Store: dir}, r.sum, r.records); err != nil {
		t.Fatalf("Write: %v", err)
	}
	thumbs, err := dir.List(ctx, store.RunPrefix(r.id)+"thumbs/")
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range thumbs {
		if !strings.Contains(info.Key, "/thumbs/refs/") {
			t.Errorf("thumbnail %s made of a 64 px output", info.Key)
		}
	}
	if len(thumbs) != 2 {
		t.Errorf("%d thumbnails; want the two references'", len(thumbs))
	}
	page, err := dir.Get(ctx, manifest.CharacterPageKey(r.id, "mara", 1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(page, []byte(`src="../../../outputs/mara/kontext/anime/0.png"`)) {
		t.Errorf("mara's page does not show the small outputs themselves")
	}
	if !bytes.Contains(page, []byte(`src="../../../thumbs/refs/`)) {
		t.Errorf("mara's page does not show the reference's thumbnail")
	}
	for _, c := range []string{"mara", "theo"} {
		checkSheet(t, decodeSheet(t, dir, artifact.SheetKey(r.id, c)), r, c, false)
	}
	// Without a known size or type an output is thumbnailed as before.
	for _, rec := range []manifest.Record{
		{Width: 64, Height: 64, ContentType: "image/png"},
		{Width: 256, Height: 100, ContentType: "image/webp"},
	} {
		if !artifact.OwnThumbnail(rec) {
			t.Errorf("OwnThumbnail(%dx%d %s) = false", rec.Width, rec.Height, rec.ContentType)
		}
	}
	for _, rec := range []manifest.Record{
		{Width: 257, Height: 64, ContentType: "image/png"},
		{Width: 64, Height: 64},
		{ContentType: "image/png"},
		{Width: 64, Height: 64, ContentType: "image/tiff"},
	} {
		if artifact.OwnThumbnail(rec) {
			t.Errorf("OwnThumbnail(%dx%d %q) = true", rec.Width, rec.Height, rec.ContentType)
		}
	}
}

// WriteFrom, fed a character at a time from a Spool, writes what Write
// writes from the records in memory.
func TestWriteFromSpoolMatchesWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ra := storeRun(t, a, "version: 1\nname: art\n")
	rb := storeRun(t, b, "version: 1\nname: art\n")
	if err := artifact.Write(ctx, artifact.Config{Store: a}, ra.sum, ra.records); err != nil {
		t.Fatal(err)
	}
	sp, err := manifest.NewSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	for i := len(rb.records) - 1; i >= 0; i-- { // any order
		if err := sp.AddRecord(rb.records[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := artifact.WriteFrom(ctx, artifact.Config{Store: b}, rb.sum, sp.Models(), sp.Characters()); err != nil {
		t.Fatalf("WriteFrom: %v", err)
	}
	wantKeys, _ := a.List(ctx, store.RunPrefix(ra.id))
	gotKeys, _ := b.List(ctx, store.RunPrefix(rb.id))
	if len(wantKeys) != len(gotKeys) {
		t.Fatalf("WriteFrom stored %d objects, Write %d", len(gotKeys), len(wantKeys))
	}
	for i, want := range wantKeys {
		if gotKeys[i].Key != want.Key {
			t.Errorf("object %d: %s, Write stored %s", i, gotKeys[i].Key, want.Key)
			continue
		}
		if strings.HasSuffix(want.Key, ".html") {
			wa, _ := a.Get(ctx, want.Key)
			ga, _ := b.Get(ctx, want.Key)
			if !bytes.Equal(wa, ga) {
				t.Errorf("report page %s differs", want.Key)
			}
		}
	}

	// A failing record source stops the writing with its error.
	boom := fmt.Errorf("records went away")
	err = artifact.WriteFrom(ctx, artifact.Config{Store: b}, rb.sum, sp.Models(), func(yield func([]manifest.Record, error) bool) {
		yield(nil, boom)
	})
	if !errors.Is(err, boom) {
		t.Errorf("WriteFrom with a failing source = %v; want its error", err)
	}
}
