package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/store/storetest"
)

func newDir(t *testing.T) *store.Dir {
	t.Helper()
	d, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDirConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store { return newDir(t) })
}

func TestNewDir(t *testing.T) {
	t.Parallel()
	if _, err := store.NewDir(""); err == nil {
		t.Error("NewDir(\"\") succeeded, want an error")
	}
	root := filepath.Join(t.TempDir(), "not", "yet", "there")
	d, err := store.NewDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		t.Fatalf("NewDir did not create %s: %v", root, err)
	}
	if d.Root() != root {
		t.Errorf("Root() = %q, want %q", d.Root(), root)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := store.NewDir(file); err == nil {
		t.Error("NewDir on a regular file succeeded, want an error")
	}
}

// TestDirFiles checks what a user browsing the output directory sees: the
// key layout as plain files, no leftovers from atomic writes.
func TestDirFiles(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	d := newDir(t)
	const key = "runs/r1/outputs/mara/m1/piano/0.png"
	if err := d.Put(ctx, key, []byte("one"), "image/png"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.PutIfAbsent(ctx, key, []byte("two"), "image/png"); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d.Root(), "runs", "r1", "outputs", "mara", "m1", "piano", "0.png")
	if got, err := os.ReadFile(p); err != nil || string(got) != "one" {
		t.Errorf("file %s = %q, %v; want %q", p, got, err, "one")
	}
	if loc := d.Location(key); loc != p {
		t.Errorf("Location = %q, want %q", loc, p)
	}
	entries, err := os.ReadDir(filepath.Dir(p))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only 0.png (temporary files left behind?)", names)
	}
	// A temporary file from an interrupted write is not an object.
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), ".likeness-tmp-123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	infos, err := d.List(ctx, "runs/")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || infos[0].Key != key {
		t.Errorf("List = %+v, want only %s", infos, key)
	}
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o644 {
		t.Errorf("file mode = %v, want 0644", perm)
	}
	if u, err := d.URL(ctx, key, 0); err != nil || !strings.HasPrefix(u, "file:///") {
		t.Errorf("URL = %q, %v; want a file:/// URL", u, err)
	}
}
