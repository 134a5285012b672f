package worker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/worker"
)

// syncBuffer is a log sink shared by the worker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRunWebhook (real Redis): a finished run is announced to the webhook,
// signed; a receiver answering 503 gets the same request again (same
// webhook-id) until it takes it; the token in the URL reaches neither the
// logs nor Redis.
func TestRunWebhook(t *testing.T) {
	t.Parallel()
	type delivery struct {
		header http.Header
		body   []byte
	}
	var mu sync.Mutex
	var got []delivery
	arrived := make(chan struct{}, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, delivery{r.Header.Clone(), body})
		n := len(got)
		mu.Unlock()
		arrived <- struct{}{}
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // receiver down once
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)

	const token = "tok-5ecret-in-url"
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("signing key"))
	logs := &syncBuffer{}
	addr, db := testenv.RedisDB(t)
	b := setupOn(t, addr, db, &scripted{}, nil, options{
		webhook: worker.Webhook{URL: srv.URL + "/hooks/" + token + "?k=" + token, Secret: secret},
		log:     logs,
	})
	st, _ := b.run(loadSpec(t, specWith("one", "two")))

	for range 2 {
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			t.Fatalf("webhook requests: %d; want 2 (a 503, then the retry)\nlogs:\n%s", len(got), logs)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	wantID := "notify:" + st.ID + ":1"
	for i, d := range got {
		id, ts := d.header.Get("webhook-id"), d.header.Get("webhook-timestamp")
		if id != wantID {
			t.Errorf("request %d: webhook-id %q, want %q (the same on every retry)", i, id, wantID)
		}
		if sig := d.header.Get("webhook-signature"); sig != "v1,"+worker.SignWebhook(secret, id, ts, d.body) {
			t.Errorf("request %d: signature %q does not verify", i, sig)
		}
		var ev worker.WebhookEvent
		if err := json.Unmarshal(d.body, &ev); err != nil {
			t.Fatalf("request %d: body: %v", i, err)
		}
		var sum manifest.Summary
		if err := json.Unmarshal(ev.Summary, &sum); err != nil || ev.Type != "run.finished" || ev.RunID != st.ID ||
			ev.Finalization != 1 || sum.Succeeded != 2 || ev.ReportKey == "" {
			t.Errorf("request %d: event %+v, summary %+v (%v)", i, ev, sum, err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "run webhook delivered"); {
		if time.Now().After(deadline) {
			t.Fatalf("no delivery logged:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the URL's token is in the logs:\n%s", logs)
	}
	assertNotInRedis(t, redis.NewClient(&redis.Options{Addr: addr, DB: db}), token)
}

// assertNotInRedis fails if any value in the database contains s.
func assertNotInRedis(t *testing.T, rdb *redis.Client, s string) {
	t.Helper()
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		var vals []string
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			vals = []string{rdb.Get(ctx, k).Val()}
		case "hash":
			for f, v := range rdb.HGetAll(ctx, k).Val() {
				vals = append(vals, f, v)
			}
		case "list":
			vals = rdb.LRange(ctx, k, 0, -1).Val()
		case "set":
			vals = rdb.SMembers(ctx, k).Val()
		case "zset":
			vals = rdb.ZRange(ctx, k, 0, -1).Val()
		}
		for _, v := range append(vals, k) {
			if strings.Contains(v, s) {
				t.Errorf("Redis key %s holds %q", k, s)
			}
		}
	}
}
