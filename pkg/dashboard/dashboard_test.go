package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/dashboard"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

func TestDashboard(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	defer rdb.Close()
	runs := runstate.New(rdb, runstate.Config{})
	dir, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := runs.Create(ctx, runstate.Run{ID: "sheet-1", Name: "sheet", Total: 2, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, task := range []string{"a", "b"} {
		if _, err := runs.Complete(ctx, "sheet-1", task, manifest.Succeeded, false, 0.04); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runs.MarkFinalized(ctx, "sheet-1"); err != nil {
		t.Fatal(err)
	}
	_ = dir.Put(ctx, store.ReportKey("sheet-1"), []byte("<html>report</html>"), "text/html")
	_ = dir.Put(ctx, "cache/secret.json", []byte("{}"), "application/json")
	srv := httptest.NewServer(dashboard.New(dashboard.Config{Runs: runs, Store: dir}))
	defer srv.Close()

	get := func(path string) (int, string, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}

	code, _, body := get("/api/runs/sheet-1")
	var run dashboard.Run
	if code != 200 || json.Unmarshal([]byte(body), &run) != nil {
		t.Fatalf("api run: %d %s", code, body)
	}
	if run.Succeeded != 2 || run.Pending != 0 || !run.Finalized || run.CostUSD != 0.08 || run.Report == "" {
		t.Errorf("api run: %+v", run)
	}
	if code, _, _ := get("/api/runs/nope"); code != 404 {
		t.Errorf("unknown run: %d; want 404", code)
	}
	code, _, body = get("/api/runs")
	if code != 200 || !strings.Contains(body, `"sheet-1"`) {
		t.Errorf("api runs: %d %s", code, body)
	}
	code, ctype, body := get("/")
	if code != 200 || !strings.Contains(ctype, "text/html") || !strings.Contains(body, "sheet-1") || !strings.Contains(body, run.Report) {
		t.Errorf("index: %d %s\n%s", code, ctype, body)
	}
	code, ctype, body = get(run.Report)
	if code != 200 || !strings.HasPrefix(ctype, "text/html") || body != "<html>report</html>" {
		t.Errorf("report: %d %s %q", code, ctype, body)
	}
	for _, bad := range []string{"/files/cache/secret.json", "/files/runs/../cache/secret.json", "/files/runs/sheet-1/missing"} {
		if code, _, _ := get(bad); code != 404 {
			t.Errorf("%s: %d; want 404", bad, code)
		}
	}
}
