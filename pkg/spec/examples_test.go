package spec

import (
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/likeness-run/likeness/pkg/provider"
)

// TestExamplesLoad loads every shipped example against the default registry.
func TestExamplesLoad(t *testing.T) {
	t.Parallel()
	reg := provider.DefaultRegistry()
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	loaded := map[string]*Spec{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Models []struct{ Model string }
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, m := range doc.Models {
			if _, ok := reg.Lookup(m.Model); !ok {
				t.Errorf("%s: model %s is not in the registry", file, m.Model)
			}
		}
		s, err := LoadFile(file, reg)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		loaded[filepath.Base(file)] = s
	}
	qs := loaded["quickstart.yaml"]
	if qs == nil {
		t.Fatal("quickstart.yaml did not load")
	}
	if got := len(qs.Expand()); got != 48 {
		t.Errorf("quickstart expands to %d tasks, want 48", got)
	}
	for _, c := range qs.Characters {
		ref := c.Reference
		if ref.Remote || ref.ContentType != "image/png" || ref.Width < 128 || len(ref.Data) > 100<<10 {
			t.Errorf("quickstart reference %s: remote=%v type=%s %dx%d %d bytes, want a local PNG portrait under 100 KiB",
				c.ID, ref.Remote, ref.ContentType, ref.Width, ref.Height, len(ref.Data))
		}
	}
}
