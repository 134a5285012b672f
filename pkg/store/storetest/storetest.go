// Package storetest is the conformance suite every blob store in likeness
// must pass, so the embedded mode's directory and the distributed mode's
// bucket behave the same for the worker, the producer and the fan-in.
//
// A store's tests call Run with a constructor that returns a fresh, empty
// store for each subtest:
//
//	func TestDir(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) storetest.Store {
//			d, err := store.NewDir(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return d
//		})
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/likeness-run/likeness/pkg/store"
)

// Store is the method set shared by store.S3 and store.Dir.
type Store interface {
	Put(ctx context.Context, key string, data []byte, contentType string) error
	PutIfAbsent(ctx context.Context, key string, data []byte, contentType string) (created bool, err error)
	Get(ctx context.Context, key string) ([]byte, error)
	Stat(ctx context.Context, key string) (store.Info, error)
	List(ctx context.Context, prefix string) ([]store.Info, error)
	Delete(ctx context.Context, key string) error
	URL(ctx context.Context, key string, ttl time.Duration) (string, error)
	Location(key string) string
}

// Run runs the conformance suite. newStore must return a new, empty store
// each time it is called and clean it up through t.Cleanup; subtests run in
// parallel, each with its own store.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"ContentType", testContentType},
		{"Stat", testStat},
		{"Missing", testMissing},
		{"List", testList},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"PutIfAbsent", testPutIfAbsent},
		{"PutIfAbsentRace", testPutIfAbsentRace},
		{"URL", testURL},
		{"Location", testLocation},
		{"LargeObject", testLargeObject},
		{"CanceledContext", testCanceledContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

func mustPut(t *testing.T, s Store, key string, data []byte, contentType string) {
	t.Helper()
	if err := s.Put(t.Context(), key, data, contentType); err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, s Store, key string) []byte {
	t.Helper()
	got, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return got
}

func wantNotExist(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("%s: got error %v, want store.ErrNotExist", what, err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s: error %v does not match fs.ErrNotExist", what, err)
	}
}

func testRoundTrip(t *testing.T, s Store) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	tests := []struct {
		key  string
		data []byte
	}{
		{"runs/r1/spec.yaml", []byte("version: 1\nname: demo\n")},
		{"runs/r1/outputs/mara/kontext-pro/piano/0.png", binary},
		{"runs/r1/records/empty.json", []byte{}},
		{"refs/ünïcode ok.png", []byte("unicode and spaces are fine")},
		{"top-level", []byte("no directory")},
	}
	for _, tt := range tests {
		mustPut(t, s, tt.key, tt.data, "")
	}
	for _, tt := range tests {
		got := mustGet(t, s, tt.key)
		if !bytes.Equal(got, tt.data) {
			t.Errorf("Get(%q) = %q, want %q", tt.key, got, tt.data)
		}
	}
}

func testOverwrite(t *testing.T, s Store) {
	const key = "runs/r1/run.json"
	mustPut(t, s, key, []byte(`{"done":false,"padding":"longer than the second"}`), "application/json")
	mustPut(t, s, key, []byte(`{"done":true}`), "application/json")
	if got, want := string(mustGet(t, s, key)), `{"done":true}`; got != want {
		t.Errorf("after overwrite Get = %q, want %q", got, want)
	}
	info, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(`{"done":true}`)) {
		t.Errorf("after overwrite Size = %d, want %d", info.Size, len(`{"done":true}`))
	}
}

// pngHeader is enough of a PNG for content sniffing.
const pngHeader = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"

func testContentType(t *testing.T, s Store) {
	// Keys carry the extension that matches the type, as the layout's keys
	// do: Dir derives the type from it, S3 stores what Put was given.
	tests := []struct {
		key, contentType, want string
		data                   []byte
	}{
		{"a/image.png", "image/png", "image/png", []byte(pngHeader)},
		{"a/record.json", "application/json", "application/json", []byte(`{}`)},
		{"a/index.html", "text/html; charset=utf-8", "text/html; charset=utf-8", []byte("<!doctype html>")},
		{"a/derived.png", "", "image/png", []byte("not really a png")},
		{"a/derived.json", "", "application/json", []byte(`{}`)},
		{"a/sniffed", "", "image/png", []byte(pngHeader)},
	}
	for _, tt := range tests {
		mustPut(t, s, tt.key, tt.data, tt.contentType)
		info, err := s.Stat(t.Context(), tt.key)
		if err != nil {
			t.Fatalf("Stat(%q): %v", tt.key, err)
		}
		if info.ContentType != tt.want {
			t.Errorf("Put(%q, type %q): Stat ContentType = %q, want %q", tt.key, tt.contentType, info.ContentType, tt.want)
		}
	}
}

func testStat(t *testing.T, s Store) {
	const key = "runs/r1/records/t1.json"
	data := []byte(`{"task":"t1"}`)
	before := time.Now()
	mustPut(t, s, key, data, "application/json")
	after := time.Now()
	info, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != key || info.Size != int64(len(data)) {
		t.Errorf("Stat = {Key: %q, Size: %d}, want {Key: %q, Size: %d}", info.Key, info.Size, key, len(data))
	}
	// Servers keep whole seconds; allow for that and a little clock skew.
	if info.ModTime.Before(before.Add(-2*time.Second)) || info.ModTime.After(after.Add(2*time.Second)) {
		t.Errorf("Stat ModTime = %v, want between %v and %v", info.ModTime, before, after)
	}
}

func testMissing(t *testing.T, s Store) {
	ctx := t.Context()
	mustPut(t, s, "runs/r1/outputs/x.png", []byte(pngHeader), "image/png")
	for _, key := range []string{
		"never/written.json",
		"runs/r1/outputs",          // only a prefix of a stored key
		"runs/r1/outputs/x.png/no", // below a stored key
		"runs/r1/outputs/x.pn",     // a prefix of a stored key's name
	} {
		_, err := s.Get(ctx, key)
		wantNotExist(t, fmt.Sprintf("Get(%q)", key), err)
		_, err = s.Stat(ctx, key)
		wantNotExist(t, fmt.Sprintf("Stat(%q)", key), err)
		if err := s.Delete(ctx, key); err != nil {
			t.Errorf("Delete(%q) of a missing key: %v, want nil", key, err)
		}
	}
	// The stored object survived deletes of keys around it.
	mustGet(t, s, "runs/r1/outputs/x.png")
}

func keysOf(infos []store.Info) []string {
	keys := make([]string, 0, len(infos))
	for _, in := range infos {
		keys = append(keys, in.Key)
	}
	return keys
}

func testList(t *testing.T, s Store) {
	ctx := t.Context()
	stored := []string{
		"runs/a/spec.yaml",
		"runs/a/outputs/mara/m1/piano/0.png",
		"runs/a/outputs/mara/m1/piano/1.png",
		"runs/a/outputs/mara/m2/anime/0.png",
		"runs/a/records/t1.json",
		"runs/a/run.json",
		"runs/a.b",
		"runs/ab/spec.yaml",
		"runs/b/spec.yaml",
		"refs/0123.png",
	}
	for i, key := range stored {
		mustPut(t, s, key, bytes.Repeat([]byte{'x'}, i+1), "")
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"runs/a/", []string{
			"runs/a/outputs/mara/m1/piano/0.png",
			"runs/a/outputs/mara/m1/piano/1.png",
			"runs/a/outputs/mara/m2/anime/0.png",
			"runs/a/records/t1.json",
			"runs/a/run.json",
			"runs/a/spec.yaml",
		}},
		{"runs/a/outputs/mara/m1/", []string{
			"runs/a/outputs/mara/m1/piano/0.png",
			"runs/a/outputs/mara/m1/piano/1.png",
		}},
		{"runs/ab/", []string{"runs/ab/spec.yaml"}},
		// A prefix that is not a whole segment matches as a plain string,
		// in byte order: '.' < '/' < 'b'.
		{"runs/a", []string{
			"runs/a.b",
			"runs/a/outputs/mara/m1/piano/0.png",
			"runs/a/outputs/mara/m1/piano/1.png",
			"runs/a/outputs/mara/m2/anime/0.png",
			"runs/a/records/t1.json",
			"runs/a/run.json",
			"runs/a/spec.yaml",
			"runs/ab/spec.yaml",
		}},
		{"runs/a/r", []string{"runs/a/records/t1.json", "runs/a/run.json"}},
		{"refs/", []string{"refs/0123.png"}},
		{"runs/c/", []string{}},
		{"nothing", []string{}},
		{"runs/a/spec.yaml/", []string{}},
		{"", []string{
			"refs/0123.png",
			"runs/a.b",
			"runs/a/outputs/mara/m1/piano/0.png",
			"runs/a/outputs/mara/m1/piano/1.png",
			"runs/a/outputs/mara/m2/anime/0.png",
			"runs/a/records/t1.json",
			"runs/a/run.json",
			"runs/a/spec.yaml",
			"runs/ab/spec.yaml",
			"runs/b/spec.yaml",
		}},
	}
	for _, tt := range tests {
		got, err := s.List(ctx, tt.prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", tt.prefix, err)
		}
		if diff := cmp.Diff(tt.want, keysOf(got)); diff != "" {
			t.Errorf("List(%q) keys (-want +got):\n%s", tt.prefix, diff)
		}
	}

	// Sizes and times come with the listing.
	got, err := s.List(ctx, "runs/b/")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Size != int64(len(stored)-1) || got[0].ModTime.IsZero() {
		t.Errorf("List(runs/b/) = %+v, want one entry of size %d with a ModTime", got, len(stored)-1)
	}
}

func testDelete(t *testing.T, s Store) {
	ctx := t.Context()
	mustPut(t, s, "runs/r1/records/t1.json", []byte("1"), "")
	mustPut(t, s, "runs/r1/records/t2.json", []byte("2"), "")
	if err := s.Delete(ctx, "runs/r1/records/t1.json"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Get(ctx, "runs/r1/records/t1.json")
	wantNotExist(t, "Get after Delete", err)
	got, err := s.List(ctx, "runs/r1/")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"runs/r1/records/t2.json"}, keysOf(got)); diff != "" {
		t.Errorf("List after Delete (-want +got):\n%s", diff)
	}
	if err := s.Delete(ctx, "runs/r1/records/t1.json"); err != nil {
		t.Errorf("second Delete: %v, want nil", err)
	}
}

func testInvalidKeys(t *testing.T, s Store) {
	ctx := t.Context()
	keys := []string{
		"",
		"../x",
		"a/../b",
		"a/..",
		"./a",
		"a/./b",
		"/abs",
		"a//b",
		"a/",
		`a\b`,
		"a\x00b",
		"a\nb",
		"a\x7fb",
		"bad\xffutf8",
		strings.Repeat("k", 1025),
	}
	for _, key := range keys {
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, store.ErrInvalidKey) {
				t.Errorf("%s(%q): got error %v, want store.ErrInvalidKey", op, key, err)
			}
		}
		check("Put", s.Put(ctx, key, []byte("x"), ""))
		created, err := s.PutIfAbsent(ctx, key, []byte("x"), "")
		check("PutIfAbsent", err)
		if created {
			t.Errorf("PutIfAbsent(%q) reported created for an invalid key", key)
		}
		_, err = s.Get(ctx, key)
		check("Get", err)
		_, err = s.Stat(ctx, key)
		check("Stat", err)
		check("Delete", s.Delete(ctx, key))
		_, err = s.URL(ctx, key, time.Minute)
		check("URL", err)
		if loc := s.Location(key); loc != "" {
			t.Errorf("Location(%q) = %q, want empty", key, loc)
		}
	}
	for _, prefix := range []string{"../", "/runs/", "a//", `a\`, "a\x00"} {
		if _, err := s.List(ctx, prefix); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("List(%q): got error %v, want store.ErrInvalidKey", prefix, err)
		}
	}
	// Nothing was written anywhere.
	got, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("after invalid writes List(\"\") = %v, want empty", keysOf(got))
	}
}

func testPutIfAbsent(t *testing.T, s Store) {
	ctx := t.Context()
	const key = "refs/abc.png"
	created, err := s.PutIfAbsent(ctx, key, []byte("first"), "image/png")
	if err != nil || !created {
		t.Fatalf("first PutIfAbsent = %v, %v; want true, nil", created, err)
	}
	created, err = s.PutIfAbsent(ctx, key, []byte("second"), "image/png")
	if err != nil || created {
		t.Fatalf("second PutIfAbsent = %v, %v; want false, nil", created, err)
	}
	if got := string(mustGet(t, s, key)); got != "first" {
		t.Errorf("after PutIfAbsent on an existing key Get = %q, want %q", got, "first")
	}
	info, err := s.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if info.ContentType != "image/png" {
		t.Errorf("PutIfAbsent ContentType = %q, want image/png", info.ContentType)
	}
	// After a Delete the key is absent again.
	if err := s.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	created, err = s.PutIfAbsent(ctx, key, []byte("third"), "image/png")
	if err != nil || !created {
		t.Fatalf("PutIfAbsent after Delete = %v, %v; want true, nil", created, err)
	}
}

func testPutIfAbsentRace(t *testing.T, s Store) {
	ctx := t.Context()
	const writers = 8
	for round := range 3 {
		key := fmt.Sprintf("runs/r1/outputs/race/%d.png", round)
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			created [writers]bool
			errs    [writers]error
		)
		for i := range writers {
			wg.Go(func() {
				<-start
				created[i], errs[i] = s.PutIfAbsent(ctx, key, fmt.Appendf(nil, "writer %d", i), "image/png")
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i := range writers {
			if errs[i] != nil {
				t.Fatalf("round %d writer %d: %v", round, i, errs[i])
			}
			if created[i] {
				if winner >= 0 {
					t.Fatalf("round %d: writers %d and %d both created %s", round, winner, i, key)
				}
				winner = i
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no writer created %s", round, key)
		}
		if got, want := string(mustGet(t, s, key)), fmt.Sprintf("writer %d", winner); got != want {
			t.Errorf("round %d: stored %q, want the winner's %q", round, got, want)
		}
	}
}

// fetch reads a URL returned by Store.URL: http(s) with a GET, file from
// the local filesystem.
func fetch(t *testing.T, raw string) ([]byte, error) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("URL returned %q: %v", raw, err)
	}
	switch u.Scheme {
	case "http", "https":
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s: %s", raw, resp.Status, body)
		}
		return body, nil
	case "file":
		if !filepath.IsAbs(filepath.FromSlash(u.Path)) {
			t.Fatalf("URL %q is not an absolute file URL", raw)
		}
		return os.ReadFile(filepath.FromSlash(u.Path))
	default:
		t.Fatalf("URL %q has scheme %q, want http, https or file", raw, u.Scheme)
		return nil, nil
	}
}

func testURL(t *testing.T, s Store) {
	ctx := t.Context()
	const key = "runs/r1/outputs/mara/m1/piano/0 with space.png"
	data := []byte(pngHeader + "pixels")
	mustPut(t, s, key, data, "image/png")
	for _, ttl := range []time.Duration{0, time.Minute} {
		u, err := s.URL(ctx, key, ttl)
		if err != nil {
			t.Fatalf("URL(ttl %v): %v", ttl, err)
		}
		got, err := fetch(t, u)
		if err != nil {
			t.Fatalf("fetching URL(ttl %v) %s: %v", ttl, u, err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("fetched %q from %s, want %q", got, u, data)
		}
	}
}

func testLocation(t *testing.T, s Store) {
	const key = "runs/r1/report/index.html"
	mustPut(t, s, key, []byte("<!doctype html>"), "text/html; charset=utf-8")
	loc := s.Location(key)
	if !strings.HasSuffix(filepath.ToSlash(loc), "/"+key) {
		t.Errorf("Location(%q) = %q, want it to end with the key", key, loc)
	}
}

func testLargeObject(t *testing.T, s Store) {
	const key = "runs/r1/outputs/big.png"
	data := make([]byte, 5<<20)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(data)
	mustPut(t, s, key, data, "image/png")
	if got := mustGet(t, s, key); !bytes.Equal(got, data) {
		t.Fatalf("Get of a %d-byte object returned %d bytes that differ", len(data), len(got))
	}
	info, err := s.Stat(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(data)) {
		t.Errorf("Stat Size = %d, want %d", info.Size, len(data))
	}
	created, err := s.PutIfAbsent(t.Context(), "runs/r1/outputs/big2.png", data, "image/png")
	if err != nil || !created {
		t.Fatalf("PutIfAbsent of a large object = %v, %v; want true, nil", created, err)
	}
}

func testCanceledContext(t *testing.T, s Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	const key = "runs/r1/canceled.json"
	if err := s.Put(ctx, key, []byte("{}"), ""); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.PutIfAbsent(ctx, key, []byte("{}"), ""); !errors.Is(err, context.Canceled) {
		t.Errorf("PutIfAbsent with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.Get(ctx, key); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a canceled context: %v, want context.Canceled", err)
	}
	_, err := s.Get(t.Context(), key)
	wantNotExist(t, "Get after a canceled Put", err)
}
