package scheduler_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/scheduler"
)

// TestSubmitRemoteImages (real Redis): remote references are downloaded and
// stored; one that cannot be used (a 404, a mask of another size than its
// image) fails the submit with ErrReference, before the run is recorded
// or anything is enqueued.
func TestSubmitRemoteImages(t *testing.T) {
	t.Parallel()
	pngOf := func(w, h int) []byte {
		var b bytes.Buffer
		if err := png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	files := map[string][]byte{"/ref.png": pngOf(8, 8), "/scene.png": pngOf(6, 4), "/mask.png": pngOf(6, 4), "/small.png": pngOf(3, 2)}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(data)
	}))
	t.Cleanup(srv.Close)

	addr, db := testenv.RedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { rdb.Close() })
	q := asynq.NewClient(asynq.RedisClientOpt{Addr: addr, DB: db})
	t.Cleanup(func() { q.Close() })
	blobs, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	runs := runstate.New(rdb, runstate.Config{})
	p, err := scheduler.New(scheduler.Config{Queue: q, Store: blobs, Runs: runs, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	submit := func(name, ref, image, mask string) (*scheduler.Submission, error) {
		body := "version: 1\nname: " + name + "\ncharacters: [{id: c, reference: \"" + srv.URL + ref + "\"}]\n" +
			"prompts: [{id: p, text: t, image: \"" + srv.URL + image + "\", mask: \"" + srv.URL + mask + "\"}]\n" +
			"models: [{id: m, model: \"sim:ideogram\"}]\n"
		s, err := spec.Parse("remote.yaml", []byte(body), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p.Submit(context.Background(), s)
	}

	sub, err := submit("good", "/ref.png", "/scene.png", "/mask.png")
	if err != nil || sub.Enqueued != 1 {
		t.Fatalf("submit with good remote images: %+v, %v", sub, err)
	}
	for _, tt := range []struct{ name, ref, mask, want string }{
		{"missing", "/gone.png", "/mask.png", "download answered 404"},
		{"mismatch", "/ref.png", "/small.png", "the mask " + srv.URL + "/small.png is 3x2 but the image " + srv.URL + "/scene.png is 6x4"},
	} {
		_, err := submit(tt.name, tt.ref, "/scene.png", tt.mask)
		if !errors.Is(err, scheduler.ErrReference) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Submit error %v; want ErrReference saying %q", tt.name, err, tt.want)
		}
		if ids, _ := runs.List(context.Background(), 10); len(ids) != 1 {
			t.Errorf("%s: runs %v; a refused submit must record nothing", tt.name, ids)
		}
	}
}
