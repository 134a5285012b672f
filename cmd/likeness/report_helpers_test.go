package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// reportPages reads every HTML page of the report under runDir/report,
// by file path.
func reportPages(t *testing.T, runDir string) map[string]string {
	t.Helper()
	pages := map[string]string{}
	err := filepath.WalkDir(filepath.Join(runDir, "report"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".html") {
			return err
		}
		b, err := os.ReadFile(p)
		pages[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("read report pages: %v", err)
	}
	if len(pages) == 0 {
		t.Fatalf("no report pages under %s", runDir)
	}
	return pages
}
