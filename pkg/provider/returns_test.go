package provider_test

import (
	"strings"
	"testing"

	"github.com/likeness-run/likeness/pkg/provider"
)

func TestReturnsSaysWhatEachModelCanReturn(t *testing.T) {
	t.Parallel()
	reg := provider.DefaultRegistry()
	cases := map[string][]string{
		"replicate:black-forest-labs/flux-kontext-pro": {"aspect ratio", "default: the reference's", "16:9", "encoded as jpg, png", "within 8%"},
		"replicate:ideogram-ai/ideogram-character":     {"default 1:1", "resolution None, 1024x1024", "inpainting edit"},
		"sim:kontext": {"checked to the pixel"},
	}
	for ref, want := range cases {
		m, ok := reg.Lookup(ref)
		if !ok {
			t.Fatalf("%s not in the registry", ref)
		}
		got := m.Returns()
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: Returns() = %q; want it to mention %q", ref, got, w)
			}
		}
	}
	for _, m := range reg.Models() {
		if m.Output != provider.OutputText && m.Returns() == "" {
			t.Errorf("%s: Returns() is empty", m.Ref)
		}
	}
}
