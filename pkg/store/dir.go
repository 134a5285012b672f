package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// tmpPrefix starts the name of every file Dir writes before renaming it into
// place. List skips such files, so a crash mid-write leaves no visible object.
const tmpPrefix = ".likeness-tmp-"

// Dir stores objects as files under a root directory, one file per key with
// the key's slashes as directory separators. It is the embedded mode's store:
// the same layout as the bucket, readable with any file browser.
//
// Writes are atomic: data goes to a temporary file in the destination
// directory, which is then renamed (Put) or hard-linked (PutIfAbsent) into
// place, so a reader sees the old object or the new one, never a part.
//
// Unlike a bucket, a directory cannot hold both "a" and "a/b", and most file
// systems refuse a path segment longer than 255 bytes; the likeness layout
// does neither. Content types are derived from the key's extension (see
// Info.ContentType). A Dir is safe for concurrent use, including by several
// processes sharing the root.
type Dir struct {
	root string // absolute, cleaned
}

// NewDir returns a store rooted at root, creating the directory if needed.
// Relative roots are resolved against the working directory once, here.
func NewDir(root string) (*Dir, error) {
	if root == "" {
		return nil, errors.New("store: new dir: root is empty")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("store: new dir %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("store: new dir: %w", err)
	}
	return &Dir{root: abs}, nil
}

// Root returns the store's absolute root directory.
func (d *Dir) Root() string { return d.root }

func (d *Dir) path(key string) string {
	return filepath.Join(d.root, filepath.FromSlash(key))
}

// Put stores data under key, replacing any existing object. contentType is
// not stored; see Info.ContentType.
func (d *Dir) Put(ctx context.Context, key string, data []byte, contentType string) error {
	if err := d.put(ctx, key, data, false); err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	return nil
}

// PutIfAbsent stores data under key unless an object already exists there,
// and reports whether it created the object. Of several concurrent callers,
// in this process or another, exactly one creates it.
func (d *Dir) PutIfAbsent(ctx context.Context, key string, data []byte, contentType string) (bool, error) {
	err := d.put(ctx, key, data, true)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	default:
		return false, fmt.Errorf("store: put if absent %s: %w", key, err)
	}
}

func (d *Dir) put(ctx context.Context, key string, data []byte, exclusive bool) error {
	dst, err := d.target(ctx, key)
	if err != nil {
		return err
	}
	tmp, err := writeTemp(filepath.Dir(dst), bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after a successful rename
	if exclusive {
		// link(2) fails with EEXIST if dst exists, so exactly one of several
		// racing writers wins, and dst only ever appears fully written.
		return os.Link(tmp, dst)
	}
	return os.Rename(tmp, dst)
}

// target checks key and ctx and makes the directory of the object stored
// under key, whose path it returns.
func (d *Dir) target(ctx context.Context, key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	dst := d.path(key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	return dst, nil
}

// writeTemp copies r to a new, synced temporary file in dir and returns
// its path; on error nothing is left behind.
func writeTemp(dir string, r io.Reader) (string, error) {
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	_, err = io.Copy(f, r)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// Get returns the object stored under key.
func (d *Dir) Get(ctx context.Context, key string) ([]byte, error) {
	if err := CheckKey(key); err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, err)
	}
	data, err := os.ReadFile(d.path(key))
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, d.mapErr(err))
	}
	return data, nil
}

// mapErr turns "no such file", "not a directory" (a key below another
// object) and "is a directory" (a key that is only a prefix of other keys)
// into ErrNotExist.
func (d *Dir) mapErr(err error) error {
	var pe *fs.PathError
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || (errors.As(err, &pe) && isDirErr(pe)) {
		return ErrNotExist
	}
	return err
}

func isDirErr(pe *fs.PathError) bool {
	fi, err := os.Stat(pe.Path)
	return err == nil && fi.IsDir()
}

// Stat describes the object stored under key.
func (d *Dir) Stat(ctx context.Context, key string) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, fmt.Errorf("store: stat %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("store: stat %s: %w", key, err)
	}
	info, err := d.stat(key, d.path(key))
	if err != nil {
		return Info{}, fmt.Errorf("store: stat %s: %w", key, err)
	}
	return info, nil
}

func (d *Dir) stat(key, p string) (Info, error) {
	f, err := os.Open(p)
	if err != nil {
		return Info{}, d.mapErr(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Info{}, err
	}
	if !fi.Mode().IsRegular() {
		return Info{}, ErrNotExist
	}
	ct := typeByExt(key)
	if ct == "" {
		// No known extension: sniff the content, as S3.Put does when given
		// no content type.
		buf := make([]byte, 512)
		n, err := io.ReadFull(f, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return Info{}, err
		}
		ct = sniff(buf[:n])
	}
	return Info{
		Key:         key,
		Size:        fi.Size(),
		ContentType: ct,
		ModTime:     fi.ModTime(),
	}, nil
}

// List describes every object whose key starts with prefix, at any depth,
// sorted by key. Like S3, the prefix is a plain string prefix: "runs/a"
// matches "runs/a/x" and "runs/ab/y"; end it with a slash to mean one
// directory. A prefix that matches nothing gives an empty list. As with S3,
// Info.ContentType is left empty; use Stat for it.
func (d *Dir) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("store: list %s: %w", prefix, err)
	}
	// Walk from the deepest directory the prefix names in full.
	start := d.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = d.path(prefix[:i])
	}
	var infos []Info
	err := filepath.WalkDir(start, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				// Nothing under the prefix, or a directory deleted while we walked.
				if p == start {
					return fs.SkipAll
				}
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == start && de.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if de.IsDir() {
			// Descend only where keys can still match the prefix.
			if dk := key + "/"; !strings.HasPrefix(dk, prefix) && !strings.HasPrefix(prefix, dk) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(de.Name(), tmpPrefix) {
			return nil
		}
		if !strings.HasPrefix(key, prefix) || !de.Type().IsRegular() {
			return nil
		}
		fi, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while we walked
		}
		if err != nil {
			return err
		}
		infos = append(infos, Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", prefix, err)
	}
	// WalkDir visits entries in lexical order per directory, which is not
	// key order ("a/b" < "a.b" as paths, but '.' < '/' as bytes).
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	return infos, nil
}

// Delete removes the object stored under key. Deleting a missing object is
// not an error. Directories left empty are kept.
func (d *Dir) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	p := d.path(key)
	fi, err := os.Lstat(p)
	if err == nil && fi.IsDir() {
		return nil // a prefix of other keys, not an object
	}
	if err := os.Remove(p); err != nil && !errors.Is(d.mapErr(err), ErrNotExist) {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	return nil
}

// URL returns a file:// URL for the object's path. ttl is ignored: the URL
// is valid for as long as the file exists.
func (d *Dir) URL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", fmt.Errorf("store: url %s: %w", key, err)
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(d.path(key))}
	return u.String(), nil
}

// Location returns the object's absolute file path, for messages to a human.
// It returns "" for an invalid key.
func (d *Dir) Location(key string) string {
	if CheckKey(key) != nil {
		return ""
	}
	return d.path(key)
}
