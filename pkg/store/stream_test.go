package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/likeness-run/likeness/pkg/store"
)

// streamer is what the fan-in needs beyond Put and Get.
type streamer interface {
	Put(ctx context.Context, key string, data []byte, contentType string) error
	Get(ctx context.Context, key string) ([]byte, error)
	PutStream(ctx context.Context, key string, r io.Reader, contentType string) error
	Walk(ctx context.Context, prefix string, fn func(store.Info) error) error
}

func TestPutStreamAndWalk(t *testing.T) {
	t.Parallel()
	for name, mk := range map[string]func(*testing.T) streamer{
		"dir": func(t *testing.T) streamer { return newDir(t) },
		"s3":  func(t *testing.T) streamer { return newS3(t) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := mk(t)
			// Larger than one part, written in small pieces, length unknown.
			var want bytes.Buffer
			pr, pw := io.Pipe()
			go func() {
				for i := 0; want.Len() < store.StreamPartSize+3<<20; i++ {
					line := fmt.Sprintf(`{"task":"%08d","pad":"%s"}`+"\n", i, strings.Repeat("x", 900))
					want.WriteString(line)
					if _, err := io.WriteString(pw, line); err != nil {
						return
					}
				}
				pw.Close()
			}()
			if err := s.PutStream(ctx, "runs/r/manifest.jsonl", pr, "application/x-ndjson"); err != nil {
				t.Fatalf("PutStream: %v", err)
			}
			got, err := s.Get(ctx, "runs/r/manifest.jsonl")
			if err != nil || !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("stored %d bytes (%v); want the %d streamed", len(got), err, want.Len())
			}

			// A stream that fails stores nothing and keeps the old object.
			pr, pw = io.Pipe()
			go func() {
				io.WriteString(pw, "partial")
				pw.CloseWithError(errors.New("record store went away"))
			}()
			if err := s.PutStream(ctx, "runs/r/manifest.jsonl", pr, ""); err == nil {
				t.Fatal("PutStream of a failing reader succeeded")
			}
			if got, _ := s.Get(ctx, "runs/r/manifest.jsonl"); !bytes.Equal(got, want.Bytes()) {
				t.Errorf("a failed PutStream changed the object (%d bytes)", len(got))
			}

			for i := range 5 {
				if err := s.Put(ctx, fmt.Sprintf("runs/r/records/t%d.json", i), []byte("{}"), ""); err != nil {
					t.Fatal(err)
				}
			}
			var keys []string
			if err := s.Walk(ctx, "runs/r/records/", func(info store.Info) error {
				keys = append(keys, info.Key)
				return nil
			}); err != nil {
				t.Fatalf("Walk: %v", err)
			}
			if len(keys) != 5 || keys[0] != "runs/r/records/t0.json" || keys[4] != "runs/r/records/t4.json" {
				t.Errorf("Walk gave %v; want the five records in key order", keys)
			}
			stop := errors.New("enough")
			n := 0
			err = s.Walk(ctx, "runs/r/records/", func(store.Info) error { n++; return stop })
			if !errors.Is(err, stop) || n != 1 {
				t.Errorf("Walk after the callback failed: %v after %d objects; want its error after 1", err, n)
			}
		})
	}
}
