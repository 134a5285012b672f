package manifest

import (
	"flag"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/html"

	"github.com/likeness-run/likeness/pkg/store"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// sampleRun is a small run with every kind of cell the report draws: images
// from two models over two variants, a cached hit, a failure, a budget skip,
// a cancellation, a missing record, a redelivered task, and a model in the
// spec with no records at all.
func sampleRun() (Summary, []Record) {
	const run = "r1"
	refs := map[string]string{"mara": "refs/3f1a9c.png", "tomas": "refs/88be02.jpg"}
	texts := map[string]string{
		"anime": `restyle as anime, a <b>"sheet"</b> & more`,
		"piano": "she is playing the piano",
	}
	var records []Record
	n := 0
	for _, c := range []string{"tomas", "mara"} {
		for _, p := range []string{"piano", "anime"} {
			for _, m := range []string{"kontext", "ideogram"} {
				for v := range 2 {
					n++
					r := Record{
						Run: run, Task: fmt.Sprintf("t%02d", n), Character: c, Prompt: p, PromptText: texts[p],
						Model: m, ModelRef: "replicate:" + m, Provider: "replicate", Variant: v,
						Seed: int64(1000 + n), Status: Succeeded, ReferenceKey: refs[c],
						OutputKey: fmt.Sprintf("runs/%s/outputs/%s/%s/%s/%d.png", run, c, m, p, v),
						Width:     1024, Height: 1024, ContentType: "image/png",
						Attempts: 1, CostUSD: 0.04, ProviderLatencyMS: int64(1500 + 250*n),
						StartedAt:  t0.Add(time.Duration(n) * time.Second),
						FinishedAt: t0.Add(time.Duration(n+20) * time.Second),
					}
					switch {
					case c == "mara" && p == "anime" && m == "ideogram" && v == 1:
						r.Status, r.OutputKey, r.CostUSD, r.Attempts = Failed, "", 0, 3
						r.ErrorClass, r.Error = "SAFETY", "output flagged by moderation after 3 attempts"
					case c == "mara" && p == "piano" && m == "kontext" && v == 1:
						r.Status, r.OutputKey, r.CostUSD, r.Attempts, r.ProviderLatencyMS = SkippedBudget, "", 0, 0, 0
						r.ErrorClass, r.Error = "BUDGET", "estimated $0.04 would exceed the $0.50 budget"
					case c == "tomas" && p == "anime" && m == "kontext" && v == 0:
						r.Status, r.OutputKey, r.CostUSD, r.Attempts, r.ProviderLatencyMS = SkippedCanceled, "", 0, 0, 0
						r.Error = "run canceled"
					case c == "tomas" && p == "piano" && m == "ideogram":
						r.Cached, r.CostUSD, r.Attempts, r.ProviderLatencyMS = true, 0, 0, 0
					case c == "tomas" && p == "anime" && m == "ideogram" && v == 1:
						continue // never recorded: the report shows a gap
					}
					if r.OutputKey == "" {
						r.Width, r.Height, r.ContentType = 0, 0, ""
					}
					records = append(records, r)
				}
			}
		}
	}
	// A redelivery of t01 that lost the race: an older failure.
	stale := records[0]
	stale.Status, stale.OutputKey, stale.Error, stale.ErrorClass = Failed, "", "stale delivery", "TRANSIENT"
	stale.FinishedAt = stale.FinishedAt.Add(-time.Hour)
	records = append(records, stale)

	s := Summarize(RunMeta{
		Run: run, Name: "mara-sheet", SpecKey: "runs/r1/spec.yaml", Total: 16, BudgetUSD: 0.5,
		CreatedAt: t0, FinishedAt: t0.Add(3*time.Minute + 7*time.Second), TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		ModelRefs: map[string]string{"kontext": "replicate:kontext", "ideogram": "replicate:ideogram", "unused": "openai:gpt-image-1"},
	}, records)
	return s, records
}

// sampleOptions gives every output and reference a thumbnail and every
// character a sheet, as the fan-in does.
func sampleOptions(s Summary, records []Record) ReportOptions {
	opts := ReportOptions{Thumbs: map[string]string{}, Sheets: map[string]string{}}
	for _, r := range records {
		for _, k := range []string{r.OutputKey, r.ReferenceKey} {
			if k != "" {
				opts.Thumbs[k] = "runs/" + s.Run + "/thumbs/" + strings.TrimSuffix(path.Base(k), path.Ext(k)) + "-" + r.Character + ".jpg"
			}
		}
		opts.Sheets[r.Character] = "runs/" + s.Run + "/sheets/" + r.Character + ".png"
	}
	return opts
}

// renderPages renders the report into a map from key to page, failing on a
// page stored twice.
func renderPages(t *testing.T, s Summary, records []Record, opts ReportOptions) map[string]string {
	t.Helper()
	pages := map[string]string{}
	err := RenderReport(s, records, opts, func(key string, html []byte) error {
		if _, dup := pages[key]; dup {
			t.Errorf("page %s rendered twice", key)
		}
		pages[key] = string(html)
		return nil
	})
	if err != nil {
		t.Fatalf("RenderReport: %v", err)
	}
	return pages
}

func allPages(pages map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(pages)) {
		b.WriteString(pages[k])
	}
	return b.String()
}

func TestRenderReportGolden(t *testing.T) {
	t.Parallel()
	s, records := sampleRun()
	pages := renderPages(t, s, records, sampleOptions(s, records))
	for golden, key := range map[string]string{
		"report.golden.html":      "runs/r1/report/index.html",
		"report-mara.golden.html": "runs/r1/report/characters/mara/index.html",
	} {
		got, ok := pages[key]
		if !ok {
			t.Fatalf("no page %s; pages: %v", key, slices.Sorted(maps.Keys(pages)))
		}
		file := filepath.Join("testdata", golden)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("read golden (regenerate with go test ./pkg/manifest -update): %v", err)
		}
		if diff := cmp.Diff(string(want), got); diff != "" {
			t.Errorf("page %s differs from %s (-want +got); if intended, run go test ./pkg/manifest -update:\n%s", key, file, diff)
		}
	}
	if len(pages) != 3 {
		t.Errorf("got %d pages, want the index and one per character (3)", len(pages))
	}
}

func TestRenderReportShowsEveryTask(t *testing.T) {
	t.Parallel()
	s, records := sampleRun()
	s.UnreadableRecords = []string{"runs/r1/records/t99.json"}
	pages := renderPages(t, s, records, sampleOptions(s, records))
	index := pages["runs/r1/report/index.html"]
	for _, want := range []string{
		"<h1>mara-sheet</h1>",
		"openai:gpt-image-1",                            // a model with no tasks is still in the table
		"output flagged by moderation after 3 attempts", // failures listed
		`href="characters/mara/index.html"`,             // a link per character
		`href="../sheets/mara.png"`,                     // and per sheet
		`href="characters/mara/index.html#p-anime"`,     // a failure links to its prompt
	} {
		if !strings.Contains(index, want) {
			t.Errorf("index lacks %q", want)
		}
	}
	out := allPages(pages)
	for _, want := range []string{
		"output flagged by moderation after 3 attempts", // failed: message
		">SAFETY<",         // failed: class
		"skipped · budget", // skipped: status
		"estimated $0.04 would exceed the $0.50 budget",
		"skipped · canceled",
		`<span class="badge cached">cached</span>`,
		"seed 1001", // captions carry the seed
		"3 attempts",
		"no record", // the gap left by the missing task
		`loading="lazy"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(out, "stale delivery") {
		t.Errorf("report shows a superseded delivery of a task")
	}
	if strings.Contains(out, "<th title=\"unused\">") {
		t.Errorf("a model without records got a grid column")
	}
}

func TestRenderReportEscapes(t *testing.T) {
	t.Parallel()
	const evil = `<script>alert("x")</script>`
	tests := []struct {
		name   string
		mutate func(*Record)
	}{
		{"prompt text", func(r *Record) { r.PromptText = "a " + evil + " b" }},
		{"error message", func(r *Record) { r.Status, r.OutputKey, r.Error = Failed, "", evil }},
		{"error class", func(r *Record) { r.Status, r.OutputKey, r.ErrorClass = Failed, "", evil }},
		{"model id", func(r *Record) { r.Model = evil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := Record{
				Run: "r1", Task: "t1", Character: "mara", Prompt: "p", Model: "m", Status: Succeeded,
				ReferenceKey: "refs/a.png", OutputKey: "runs/r1/outputs/mara/m/p/0.png", Attempts: 1,
			}
			tt.mutate(&r)
			out := allPages(renderPages(t, Summarize(RunMeta{Run: "r1"}, []Record{r}), []Record{r}, ReportOptions{}))
			if strings.Contains(out, "<script") {
				t.Errorf("report contains an unescaped <script>")
			}
			if !strings.Contains(out, "&lt;script&gt;") {
				t.Errorf("report lacks the escaped text &lt;script&gt;")
			}
		})
	}
}

func TestRenderReportNeedsRun(t *testing.T) {
	t.Parallel()
	err := RenderReport(Summary{}, nil, ReportOptions{}, func(string, []byte) error { return nil })
	if err == nil {
		t.Error("RenderReport with no run id: got nil error")
	}
}

func TestRelKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		from, key, want string
	}{
		{"runs/r1/report", "runs/r1/outputs/c/m/p/0.png", "../outputs/c/m/p/0.png"},
		{"runs/r1/report", "refs/abc.png", "../../../refs/abc.png"},
		{"runs/r1/report", "runs/r2/outputs/c/m/p/1.webp", "../../r2/outputs/c/m/p/1.webp"},
		{"runs/r1/report", "runs/r1/report/thumb.png", "thumb.png"},
		{"runs/r1/report", "runs/r1/report", "."},
		{"runs/r1/report/", "/refs/abc.png", "../../../refs/abc.png"},
		{"runs/report", "runs/reports/x.png", "../reports/x.png"}, // whole elements, not string prefixes
		{"", "refs/abc.png", "refs/abc.png"},
		{".", "refs/abc.png", "refs/abc.png"},
	}
	for _, tt := range tests {
		t.Run(tt.from+"->"+tt.key, func(t *testing.T) {
			t.Parallel()
			got := relKey(tt.from, tt.key)
			if got != tt.want {
				t.Errorf("relKey(%q, %q) = %q, want %q", tt.from, tt.key, got, tt.want)
			}
			if tt.from != "" && !strings.HasPrefix(tt.key, "/") {
				if back := path.Join(tt.from, got); back != path.Clean(tt.key) {
					t.Errorf("path.Join(%q, %q) = %q, want back %q", tt.from, got, back, tt.key)
				}
			}
		})
	}
}

func TestRelURLEscapes(t *testing.T) {
	t.Parallel()
	got := relURL("runs/r1/report", "runs/r1/outputs/a b/m#1/p?/0.png")
	want := "../outputs/a%20b/m%231/p%3F/0.png"
	if got != want {
		t.Errorf("relURL = %q, want %q", got, want)
	}
}

// TestRenderReportLinksResolve lays out a run the way the store does, writes
// every page to its key and checks that every link and image in every page
// opens a file that exists and every anchor an element, as a browser given
// file:// would, and that every stored image, thumbnail and sheet is linked.
func TestRenderReportLinksResolve(t *testing.T) {
	t.Parallel()
	s, records := sampleRun()
	opts := sampleOptions(s, records)
	root := t.TempDir()
	abs := func(key string) string { return filepath.Join(root, filepath.FromSlash(key)) }
	write := func(key string, data []byte) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(abs(key)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(abs(key), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantFiles := map[string]bool{}
	for _, r := range Dedupe(records) {
		for _, k := range []string{r.ReferenceKey, r.OutputKey, opts.Thumbs[r.OutputKey], opts.Thumbs[r.ReferenceKey], opts.Sheets[r.Character]} {
			if k != "" {
				write(k, []byte("img"))
				wantFiles[abs(k)] = true
			}
		}
	}
	pages := renderPages(t, s, records, opts)
	ids := map[string]map[string]bool{} // page file -> ids
	type ref struct{ page, link string }
	var links []ref
	for key, out := range pages {
		write(key, []byte(out))
		doc, err := html.Parse(strings.NewReader(out))
		if err != nil {
			t.Fatalf("parse %s: %v", key, err)
		}
		ids[abs(key)] = map[string]bool{}
		for n := range doc.Descendants() {
			if n.Type != html.ElementNode {
				continue
			}
			for _, a := range n.Attr {
				switch a.Key {
				case "id":
					ids[abs(key)][a.Val] = true
				case "src", "href":
					links = append(links, ref{key, a.Val})
				}
			}
		}
	}
	linked := map[string]bool{}
	for _, l := range links {
		u, err := url.Parse(l.link)
		if err != nil {
			t.Errorf("%s: link %q: %v", l.page, l.link, err)
			continue
		}
		if u.Scheme != "" || u.Host != "" || strings.HasPrefix(u.Path, "/") {
			t.Errorf("%s: link %q is not relative to the page", l.page, l.link)
			continue
		}
		target := abs(l.page)
		if u.Path != "" {
			target = filepath.Join(filepath.Dir(abs(l.page)), filepath.FromSlash(u.Path))
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s: link %q does not resolve to a file: %v", l.page, l.link, err)
			}
			linked[target] = true
		}
		if u.Fragment != "" && !ids[target][u.Fragment] {
			t.Errorf("%s: anchor %q has no element with that id in its page", l.page, l.link)
		}
	}
	for f := range wantFiles {
		if !linked[f] {
			t.Errorf("stored file %s is not linked from the report", f)
		}
	}
	for key := range pages {
		if key != store.ReportKey(s.Run) && !linked[abs(key)] {
			t.Errorf("page %s is not linked from any page", key)
		}
	}
}
