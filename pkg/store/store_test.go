package store_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/likeness-run/likeness/pkg/store"
)

func TestCheckKey(t *testing.T) {
	t.Parallel()
	valid := []string{
		"refs/0123abcd.png",
		store.SpecKey("r1"),
		store.OutputKey("r1", "mara", "kontext-pro", "piano", 3, "png"),
		store.RecordKey("r1", "t1"),
		store.ManifestKey("r1"),
		store.SummaryKey("r1"),
		store.ReportKey("r1"),
		"a",
		"a..b/c...d",
		"ünïcode/with space",
		strings.Repeat("k", 1024),
	}
	for _, key := range valid {
		if err := store.CheckKey(key); err != nil {
			t.Errorf("CheckKey(%q) = %v, want nil", key, err)
		}
	}
	invalid := []string{"", "..", "../x", "a/..", "a/../b", ".", "./a", "a/.", "/abs", "a//b", "a/", `a\b`,
		"a\x00b", "a\tb", "a\x7f", "\xff", strings.Repeat("k", 1025)}
	for _, key := range invalid {
		err := store.CheckKey(key)
		if !errors.Is(err, store.ErrInvalidKey) || !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("CheckKey(%q) = %v, want an error wrapping ErrInvalidKey and fs.ErrInvalid", key, err)
		}
	}
}

func TestErrNotExistMatchesFS(t *testing.T) {
	t.Parallel()
	if !errors.Is(store.ErrNotExist, fs.ErrNotExist) {
		t.Error("ErrNotExist does not match fs.ErrNotExist")
	}
	if errors.Is(store.ErrNotExist, store.ErrInvalidKey) || errors.Is(fs.ErrNotExist, store.ErrNotExist) {
		t.Error("sentinels match too widely")
	}
}
