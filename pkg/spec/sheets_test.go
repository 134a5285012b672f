package spec

import (
	"errors"
	"strings"
	"testing"
)

func TestSheets(t *testing.T) {
	t.Parallel()
	const base = "version: 1\nname: x\ncharacters: [{id: c, reference: \"https://example.com/c.png\"}]\nprompts: [{id: p, text: t}]\nmodels: [{id: m, model: sim:kontext}]\n"
	tests := []struct {
		name    string
		block   string
		want    Sheets
		wantErr string // "" for no error
	}{
		{"absent", "", Sheets{}, ""},
		{"null", "sheets:\n", Sheets{}, ""},
		{"first", "sheets: {variants: first}\n", Sheets{Variants: SheetFirstVariant}, ""},
		{"all", "sheets:\n  variants: all\n", Sheets{Variants: SheetAllVariants}, ""},
		{"number", "sheets:\n  variants: 2\n", Sheets{}, `spec.yaml:7: sheets.variants: must be "first" (variant 0 of each prompt and model, the default) or "all" (every variant), got the number 2`},
		{"unknown value", "sheets: {variants: some}\n", Sheets{}, `spec.yaml:6: sheets.variants: must be "first"`},
		{"unknown field", "sheets:\n  size: 3\n", Sheets{}, "spec.yaml:7: sheets.size: unknown field (allowed: variants)"},
		{"not a mapping", "sheets: all\n", Sheets{}, `spec.yaml:6: sheets: must be a mapping (key: value), got "all"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(base + tt.block)
			s, err := Parse("spec.yaml", data, nil, nil)
			sheets, perr := ParseSheets("spec.yaml", data)
			for what, e := range map[string]error{"Parse": err, "ParseSheets": perr} {
				if tt.wantErr == "" {
					if e != nil {
						t.Fatalf("%s: %v", what, e)
					}
					continue
				}
				var es Errors
				if !errors.As(e, &es) || !strings.HasPrefix(e.Error(), tt.wantErr) {
					t.Errorf("%s error = %v, want one starting %q", what, e, tt.wantErr)
				}
			}
			if tt.wantErr != "" {
				return
			}
			if s.Sheets != tt.want || sheets != tt.want {
				t.Errorf("Parse sheets = %+v, ParseSheets = %+v, want %+v", s.Sheets, sheets, tt.want)
			}
		})
	}
}

// TestSheetsDigest checks that the default sheets keep a spec's run id and
// that asking for every variant makes a new one.
func TestSheetsDigest(t *testing.T) {
	t.Parallel()
	const base = "version: 1\nname: x\ncharacters: [{id: c, reference: \"https://example.com/c.png\"}]\nprompts: [{id: p, text: t}]\nmodels: [{id: m, model: sim:kontext}]\n"
	digest := func(doc string) string {
		t.Helper()
		s, err := Parse("spec.yaml", []byte(doc), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.Digest()
	}
	plain := digest(base)
	if got := digest(base + "sheets: {variants: first}\n"); got != plain {
		t.Errorf("sheets: {variants: first} changed the digest")
	}
	if got := digest(base + "sheets: {variants: all}\n"); got == plain {
		t.Errorf("sheets: {variants: all} kept the digest; the run would not redraw its sheets")
	}
}
