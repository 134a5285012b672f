package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/likeness-run/likeness/pkg/store"
)

// Dest is where an export goes: slash-separated file names below a root.
type Dest interface {
	// Open reads a file; the error matches fs.ErrNotExist when it is absent.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Create starts a file that appears, whole, only when committed.
	Create(ctx context.Context, name string) (File, error)
	// Location names a file for messages.
	Location(name string) string
	// List returns the names of the files whose names start with prefix,
	// in any order.
	List(ctx context.Context, prefix string) ([]string, error)
}

// File is a file being written to a Dest.
type File interface {
	io.Writer
	// Commit makes the file appear under its name, replacing any file
	// there.
	Commit() error
	// Abort drops what was written. It is a no-op after Commit.
	Abort()
}

// Dir is a Dest in a local directory. Files are written to a temporary
// file beside their name and renamed into place, so a reader (or an export
// interrupted half-way) never sees half a file.
type Dir struct{ Root string }

// Open implements Dest.
func (d Dir) Open(_ context.Context, name string) (io.ReadCloser, error) {
	return os.Open(filepath.Join(d.Root, filepath.FromSlash(name)))
}

// Create implements Dest.
func (d Dir) Create(_ context.Context, name string) (File, error) {
	p := filepath.Join(d.Root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &dirFile{f: f, final: p}, nil
}

// Location implements Dest.
func (d Dir) Location(name string) string { return filepath.Join(d.Root, filepath.FromSlash(name)) }

// List implements Dest. Temporary files of writes in progress are left out.
func (d Dir) List(_ context.Context, prefix string) ([]string, error) {
	var out []string
	dir := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir = prefix[:i]
	}
	root := filepath.Join(d.Root, filepath.FromSlash(dir))
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == root {
			return fs.SkipAll
		}
		if err != nil || e.IsDir() || strings.Contains(e.Name(), ".tmp-") {
			return err
		}
		rel, err := filepath.Rel(d.Root, p)
		if err != nil {
			return err
		}
		if name := filepath.ToSlash(rel); strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
		return nil
	})
	return out, err
}

type dirFile struct {
	f     *os.File
	final string
	done  bool
}

func (f *dirFile) Write(p []byte) (int, error) { return f.f.Write(p) }

func (f *dirFile) Commit() error {
	if err := f.f.Sync(); err != nil {
		f.Abort()
		return err
	}
	if err := f.f.Close(); err != nil {
		os.Remove(f.f.Name())
		return err
	}
	if err := os.Chmod(f.f.Name(), 0o644); err != nil {
		os.Remove(f.f.Name())
		return err
	}
	if err := os.Rename(f.f.Name(), f.final); err != nil {
		os.Remove(f.f.Name())
		return err
	}
	f.done = true
	return nil
}

func (f *dirFile) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.f.Close()
	os.Remove(f.f.Name())
}

// Objects is the part of a store a Bucket writes through.
type Objects interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, data []byte, contentType string) error
	List(ctx context.Context, prefix string) ([]store.Info, error)
}

// Bucket is a Dest under a key prefix of an object store (pkg/store's S3).
// A file is buffered in memory and stored with one Put, which S3 makes
// atomic; WebDataset shards are therefore held whole in memory while they
// are written (bound it with Options.ShardBytes).
type Bucket struct {
	Store Objects
	// Prefix is prepended to every name, with a slash; empty for none.
	Prefix string
	// Name is the bucket's name, for messages.
	Name string
}

func (b Bucket) key(name string) (string, error) {
	k := name
	if p := strings.Trim(b.Prefix, "/"); p != "" {
		k = p + "/" + name
	}
	return k, store.CheckKey(k)
}

// Open implements Dest.
func (b Bucket) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	k, err := b.key(name)
	if err != nil {
		return nil, err
	}
	data, err := b.Store.Get(ctx, k)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// Create implements Dest.
func (b Bucket) Create(ctx context.Context, name string) (File, error) {
	k, err := b.key(name)
	if err != nil {
		return nil, err
	}
	return &bucketFile{ctx: ctx, b: b, key: k}, nil
}

// Location implements Dest.
func (b Bucket) Location(name string) string {
	k, _ := b.key(name)
	return "s3://" + b.Name + "/" + k
}

// List implements Dest.
func (b Bucket) List(ctx context.Context, prefix string) ([]string, error) {
	base := strings.Trim(b.Prefix, "/")
	if base != "" {
		base += "/"
	}
	infos, err := b.Store.List(ctx, base+prefix)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(infos))
	for _, info := range infos {
		out = append(out, strings.TrimPrefix(info.Key, base))
	}
	return out, nil
}

type bucketFile struct {
	ctx context.Context // the Create call's; a File lives within it
	b   Bucket
	key string
	buf bytes.Buffer
}

func (f *bucketFile) Write(p []byte) (int, error) { return f.buf.Write(p) }

func (f *bucketFile) Commit() error {
	ct := mime.TypeByExtension(path.Ext(f.key))
	if ct == "" {
		ct = "application/octet-stream"
	}
	return f.b.Store.Put(f.ctx, f.key, f.buf.Bytes(), ct)
}

func (f *bucketFile) Abort() { f.buf.Reset() }

// writeFile writes data to name in one go.
func writeFile(ctx context.Context, dst Dest, name string, data []byte) error {
	f, err := dst.Create(ctx, name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// readFile reads name whole; ok is false when it does not exist.
func readFile(ctx context.Context, dst Dest, name string) (data []byte, ok bool, err error) {
	r, err := dst.Open(ctx, name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer r.Close()
	data, err = io.ReadAll(r)
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", dst.Location(name), err)
	}
	return data, true, nil
}
