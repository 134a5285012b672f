package manifest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// bigRun is a synthetic run of 20,000 records over 4 characters, with the
// longest ids, prompts and errors a spec allows, to push pages to their
// limits. One task in seven failed.
func bigRun() (Summary, []Record) {
	const run = "big-20k"
	long := func(prefix string, n int) string { return prefix + strings.Repeat("x", n-len(prefix)) }
	var models []string
	for m := range 10 {
		models = append(models, long(fmt.Sprintf("model-%d-", m), 64))
	}
	text := strings.Repeat(`a "sheet" & <more> `, 4000/19)
	records := make([]Record, 0, 20_000)
	n := 0
	for c := range 4 {
		char := long(fmt.Sprintf("character-%d-", c), 64)
		for p := range 50 {
			prompt := long(fmt.Sprintf("prompt-%02d-", p), 64)
			for _, m := range models {
				for v := range 10 {
					n++
					r := Record{
						Run: run, Task: fmt.Sprintf("%016x", n), Character: char, Prompt: prompt, PromptText: text,
						Model: m, ModelRef: "sim:kontext", Variant: v, Seed: int64(n), Status: Succeeded,
						ReferenceKey: "refs/" + strings.Repeat("a", 64) + ".png",
						OutputKey:    fmt.Sprintf("runs/%s/outputs/%s/%s/%s/%d.png", run, char, m, prompt, v),
						Attempts:     1, ProviderLatencyMS: 1200, FinishedAt: t0,
					}
					if n%7 == 0 {
						r.Status, r.OutputKey, r.ErrorClass = Failed, "", "TRANSIENT"
						r.Error = strings.Repeat("<provider said no> ", 100)
					}
					records = append(records, r)
				}
			}
		}
	}
	s := Summarize(RunMeta{Run: run, Name: "big", CreatedAt: t0, FinishedAt: t0.Add(time.Hour)}, records)
	return s, records
}

func TestRenderReportScales(t *testing.T) {
	t.Parallel()
	s, records := bigRun()
	opts := ReportOptions{Thumbs: map[string]string{}}
	for _, r := range records {
		if r.OutputKey != "" {
			opts.Thumbs[r.OutputKey] = strings.Replace(r.OutputKey, "/outputs/", "/thumbs/", 1) + ".jpg"
		}
	}
	start := time.Now()
	pages := renderPages(t, s, records, opts)
	elapsed := time.Since(start)

	cards, biggest := 0, 0
	for key, page := range pages {
		biggest = max(biggest, len(page))
		if len(page) > MaxPageBytes {
			t.Errorf("%s is %d bytes, over the %d limit", key, len(page), MaxPageBytes)
		}
		if !strings.Contains(key, "/characters/") {
			continue
		}
		imgs := tags(page, "<img ")
		if len(imgs) > DefaultPageImages {
			t.Errorf("%s has %d images, over %d", key, len(imgs), DefaultPageImages)
		}
		for _, tag := range imgs {
			if !strings.Contains(tag, `loading="lazy"`) {
				t.Fatalf("%s: image not lazy-loaded: %s", key, tag)
			}
			if strings.Contains(tag, `/outputs/`) {
				t.Fatalf("%s: page loads a full-size output instead of its thumbnail: %s", key, tag)
			}
		}
		// Each prompt block also has a card for its reference.
		cards += strings.Count(page, `<figure class="card">`) - strings.Count(page, `class="prompt panel"`)
	}
	if cards != len(records) {
		t.Errorf("character pages hold %d task cards, want one per record (%d)", cards, len(records))
	}
	if len(pages) < 1+4*3 {
		t.Errorf("got %d pages for 4 characters of 5,000 tasks; want numbered pages", len(pages))
	}
	for _, want := range []string{"page-2.html", "page-3.html"} {
		if !strings.Contains(pages["runs/big-20k/report/index.html"], want) {
			t.Errorf("index does not link %s", want)
		}
	}
	t.Logf("20,000 records: %d pages, largest %d bytes, rendered in %s", len(pages), biggest, elapsed)
}

// tags returns every tag of page starting with open, up to its '>'.
func tags(page, open string) []string {
	var out []string
	for {
		i := strings.Index(page, open)
		if i < 0 {
			return out
		}
		j := strings.IndexByte(page[i:], '>')
		if j < 0 {
			return out
		}
		out = append(out, page[i:i+j+1])
		page = page[i+j+1:]
	}
}

// TestRenderReportManyCharacters renders 20,000 records of 5,000
// characters: the index splits into pages of CharactersPerIndexPage, none
// over MaxPageBytes, and every character's page is linked from one.
func TestRenderReportManyCharacters(t *testing.T) {
	t.Parallel()
	const run = "wide"
	var records []Record
	for c := range 5000 {
		for m := range 4 {
			r := Record{Run: run, Task: fmt.Sprintf("%016x", c*4+m), Character: fmt.Sprintf("character-%04d-%s", c, strings.Repeat("x", 48)),
				Prompt: "p", PromptText: "text", Model: fmt.Sprintf("model-%d", m), Status: Succeeded,
				ReferenceKey: "refs/" + strings.Repeat("a", 64) + ".png"}
			r.OutputKey = fmt.Sprintf("runs/%s/outputs/%s/%s/p/0.png", run, r.Character, r.Model)
			if c%3 == 0 {
				r.Status, r.OutputKey, r.Error = Failed, "", strings.Repeat("<error> ", 40)
			}
			records = append(records, r)
		}
	}
	s := Summarize(RunMeta{Run: run}, records)
	pages := renderPages(t, s, records, ReportOptions{})
	linked := map[string]bool{}
	indexPages := 0
	for n := 1; ; n++ {
		page, ok := pages[IndexPageKey(run, n)]
		if !ok {
			break
		}
		indexPages++
		if len(page) > MaxPageBytes {
			t.Errorf("index page %d is %d bytes, over %d", n, len(page), MaxPageBytes)
		}
		for _, tag := range tags(page, `<a href="characters/`) {
			linked[strings.TrimSuffix(strings.TrimPrefix(tag, `<a href="`), `">`)] = true
		}
	}
	if want := 5000 / CharactersPerIndexPage; indexPages != want {
		t.Errorf("%d index pages, want %d", indexPages, want)
	}
	for key := range pages {
		if rel, ok := strings.CutPrefix(key, "runs/wide/report/"); ok && strings.HasPrefix(rel, "characters/") && !linked[rel] {
			t.Fatalf("character page %s is not linked from any index page", key)
		}
	}
}
