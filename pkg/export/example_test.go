package export_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/png"
	"os"

	"github.com/likeness-run/likeness/pkg/export"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/store"
)

// ExampleRun exports a finished run of one image as an imagefolder, twice:
// the second export finds everything in place and writes nothing.
func ExampleRun() {
	ctx := context.Background()
	root, _ := os.MkdirTemp("", "likeness-run-")
	defer os.RemoveAll(root)
	out, _ := os.MkdirTemp("", "likeness-dataset-")
	defer os.RemoveAll(out)

	// A run as the workers and the fan-in leave it.
	src, _ := store.NewDir(root)
	var img bytes.Buffer
	_ = png.Encode(&img, image.NewGray(image.Rect(0, 0, 8, 8)))
	sum := sha256.Sum256(img.Bytes())
	rec := manifest.Record{
		Run: "demo-1", Task: "0123456789abcdef", Character: "mara", Prompt: "piano",
		PromptText: "she is playing the piano", Model: "kontext", ModelRef: "sim:kontext",
		Status: manifest.Succeeded, OutputKey: store.OutputKey("demo-1", "mara", "kontext", "piano", 0, "png"),
		SHA256: hex.EncodeToString(sum[:]), Bytes: int64(img.Len()), Width: 8, Height: 8,
	}
	_ = src.Put(ctx, rec.OutputKey, img.Bytes(), "image/png")
	var jsonl bytes.Buffer
	_ = manifest.WriteJSONL(&jsonl, []manifest.Record{rec})
	_ = src.Put(ctx, store.ManifestKey("demo-1"), jsonl.Bytes(), "application/x-ndjson")

	for range 2 {
		res, err := export.Run(ctx, src, export.Dir{Root: out}, export.Options{Run: "demo-1", Format: export.ImageFolder})
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%d records: %d written, %d kept: %v\n", res.Records, res.Written, res.Kept, res.Files)
	}
	// Output:
	// 1 records: 2 written, 0 kept: [images/mara/kontext/piano/0.png metadata.jsonl]
	// 1 records: 0 written, 2 kept: [images/mara/kontext/piano/0.png metadata.jsonl]
}
