package export_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/export"
	"github.com/likeness-run/likeness/pkg/store"
)

// TestExportToS3 exports shards and an imagefolder to a prefix of the real
// MinIO, reads them back, and exports again without writing.
func TestExportToS3(t *testing.T) {
	t.Parallel()
	env := testenv.S3(t)
	bucket := "export-test-" + strings.ToLower(time.Now().Format("150405.000000"))
	bucket = strings.ReplaceAll(bucket, ".", "-")
	s3, err := store.NewS3(store.S3Config{Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey, Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := minio.New(env.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(env.AccessKey, env.SecretKey, "")})
		if err != nil {
			return
		}
		for rerr := range c.RemoveObjects(ctx, bucket, c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}), minio.RemoveObjectsOptions{}) {
			t.Errorf("cleanup: %v", rerr.Err)
		}
		_ = c.RemoveBucket(ctx, bucket)
	})

	f := newRun(t, true, 0)
	for _, format := range []export.Format{export.WebDataset, export.ImageFolder} {
		prefix := "datasets/" + string(format)
		dst := export.Bucket{Store: s3, Prefix: prefix, Name: bucket}
		opts := export.Options{Run: f.run, Format: format, ShardBytes: 24 << 10}
		res, err := export.Run(t.Context(), f.st, dst, opts)
		if err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		// Download the prefix and read it back like a local export.
		local := t.TempDir()
		infos, err := s3.List(t.Context(), prefix+"/")
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) != res.Written {
			t.Errorf("%s: %d objects under %s, result says %d written", format, len(infos), prefix, res.Written)
		}
		for _, info := range infos {
			data, err := s3.Get(t.Context(), info.Key)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(local, filepath.FromSlash(strings.TrimPrefix(info.Key, prefix+"/")))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if format == export.WebDataset {
			readShards(t, local, f.succeeded(), 24<<10)
		} else {
			readImageFolder(t, local, f.succeeded())
		}
		again, err := export.Run(t.Context(), f.st, dst, opts)
		if err != nil || again.Written != 0 || again.Kept != res.Written {
			t.Errorf("%s: second export %+v, %v; want nothing written", format, again, err)
		}
	}
}
