package store_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/likeness-run/likeness/pkg/store"
)

// The embedded mode keeps a run's files under a local directory, with the
// same keys as the bucket.
func ExampleDir() {
	root, err := os.MkdirTemp("", "likeness-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)

	ctx := context.Background()
	out, err := store.NewDir(root)
	if err != nil {
		log.Fatal(err)
	}

	// A worker stores an output; a redelivered task finds it already there.
	key := store.OutputKey("r1", "mara", "kontext-pro", "piano", 0, "png")
	created, err := out.PutIfAbsent(ctx, key, []byte("\x89PNG..."), "image/png")
	if err != nil {
		log.Fatal(err)
	}
	again, err := out.PutIfAbsent(ctx, key, []byte("\x89PNG..."), "image/png")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first write created:", created, "- redelivery created:", again)

	// The fan-in lists the run.
	if err := out.Put(ctx, store.SummaryKey("r1"), []byte(`{"done":1}`), "application/json"); err != nil {
		log.Fatal(err)
	}
	infos, err := out.List(ctx, store.RunPrefix("r1"))
	if err != nil {
		log.Fatal(err)
	}
	for _, info := range infos {
		fmt.Println(info.Key, info.Size)
	}
	info, err := out.Stat(ctx, key)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.ContentType)

	_, err = out.Get(ctx, store.ManifestKey("r1"))
	fmt.Println(err)
	// Output:
	// first write created: true - redelivery created: false
	// runs/r1/outputs/mara/kontext-pro/piano/0.png 7
	// runs/r1/run.json 10
	// image/png
	// store: get runs/r1/manifest.jsonl: object does not exist
}
