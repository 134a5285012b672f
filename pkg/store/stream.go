package store

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/minio/minio-go/v7"
)

// Streaming: the run's fan-in writes manifest.jsonl (about a kilobyte per
// task, so 100 MB for a run of 100,000) from a stream, and walks the run's
// records without holding the listing; both stores do it with bounded
// memory.

// StreamPartSize is the part size of a PutStream to S3: the one buffer the
// upload holds. S3 allows up to 10,000 parts, so a stream may be up to
// 160 GiB.
const StreamPartSize = 16 << 20

// PutStream stores what r yields under key, replacing any existing object,
// without knowing its length: a multipart upload of StreamPartSize parts,
// one part buffered at a time. If r fails, the upload is aborted and no
// object is written. An empty contentType is derived from the key's
// extension.
func (s *S3) PutStream(ctx context.Context, key string, r io.Reader, contentType string) error {
	if err := CheckKey(key); err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	if contentType == "" {
		contentType = typeByExt(key)
	}
	// Each part is checked by its Content-MD5 rather than signed chunk by
	// chunk, as Put's body is (see putOptions).
	opts := minio.PutObjectOptions{ContentType: contentType, PartSize: StreamPartSize,
		DisableContentSha256: true, SendContentMd5: true}
	if _, err := s.client.PutObject(ctx, s.bucket, key, r, -1, opts); err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	return nil
}

// Walk calls fn with every object whose key starts with prefix, as List
// describes them, a listing page at a time rather than all at once; it
// stops at fn's first error and returns it. Objects come in key order.
func (s *S3) Walk(ctx context.Context, prefix string, fn func(Info) error) error {
	if err := checkPrefix(prefix); err != nil {
		return fmt.Errorf("store: list %s: %w", prefix, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the listing if fn stops it early
	for oi := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return fmt.Errorf("store: list %s: %w", prefix, oi.Err)
		}
		if err := fn(s.info(oi)); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: list %s: %w", prefix, err)
	}
	return nil
}

// PutStream stores what r yields under key, replacing any existing object:
// it is copied to a temporary file beside the object and renamed into
// place, so the object appears whole or not at all.
func (d *Dir) PutStream(ctx context.Context, key string, r io.Reader, contentType string) error {
	if err := d.putStream(ctx, key, r); err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	return nil
}

func (d *Dir) putStream(ctx context.Context, key string, r io.Reader) error {
	dst, err := d.target(ctx, key)
	if err != nil {
		return err
	}
	tmp, err := writeTemp(filepath.Dir(dst), r)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after a successful rename
	if err := ctx.Err(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// Walk calls fn with every object whose key starts with prefix, in key
// order, and stops at fn's first error. The local directory holds
// embedded-mode runs, so it walks List's result.
func (d *Dir) Walk(ctx context.Context, prefix string, fn func(Info) error) error {
	infos, err := d.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}
