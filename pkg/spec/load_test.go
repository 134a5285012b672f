package spec

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/likeness-run/likeness/pkg/provider"
)

// testRegistry is the default catalog plus a model with secret and required
// parameters, which no real catalog entry has yet.
func testRegistry() *provider.Registry {
	return provider.NewRegistry(append(provider.Catalog(), provider.Model{
		Ref: "test:secretive", Provider: "test", Name: "secretive",
		Params: []provider.Param{
			{Name: "api_key", Type: provider.String, Secret: true, Required: true},
			{Name: "steps", Type: provider.Integer, Min: provider.Range(1), Max: provider.Range(50), Required: true},
			{Name: "mode", Type: provider.String, Enum: []string{"fast", "slow"}, Required: true},
		},
	})...)
}

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()
	const idRule = "use lowercase letters, digits, '.', '_' and '-' (ids become storage path segments)"
	tests := []struct {
		file   string
		models Models // nil: the default registry
		want   []string
	}{
		{file: "syntax.yaml", want: []string{
			"testdata/syntax.yaml:8: invalid YAML: found unexpected end of stream",
		}},
		{file: "empty.yaml", want: []string{
			"testdata/empty.yaml: the spec is empty",
		}},
		{file: "two-docs.yaml", want: []string{
			"testdata/two-docs.yaml:3: a spec is one YAML document; remove the second one (after ---)",
		}},
		{file: "bad-models.yaml", want: []string{
			`testdata/bad-models.yaml:11: models[0].model: unknown model "sim:kontex" (known: sim:flaky, sim:gpt-image, sim:ideogram, sim:kontext, sim:seededit)`,
			"testdata/bad-models.yaml:13: models[1].model: \"kontext\" must be \"provider:name\", e.g. sim:kontext (see `likeness models`)",
			`testdata/bad-models.yaml:15: models[2].model: unknown provider "repliate" (known: ark, bfl, ideogram, openai, replicate, runway, sim)`,
			"testdata/bad-models.yaml:17: models[3].model: replicate:intelligent-utilities/topic-tags is a text model, not an image model (topic tags are set with the tags: block)",
		}},
		{file: "bad-params.yaml", want: []string{
			`testdata/bad-params.yaml:13: models[0].params.aspect_ratio: "5:4" is not allowed (allowed: match_input_image, 1:1, 3:4, 4:3, 2:3, 3:2, 9:16, 16:9)`,
			`testdata/bad-params.yaml:14: models[0].params.size: 10 is below the minimum 64`,
			`testdata/bad-params.yaml:15: models[0].params.colour: unknown parameter for sim:kontext (allowed: aspect_ratio, size, latency_ms, fail_rate, blank_rate, safety_rate, output_format)`,
			`testdata/bad-params.yaml:17: models[0].params.fail_rate: want a number, got often (string)`,
			`testdata/bad-params.yaml:20: models[1].params.latency_ms: must be a finite number, got .inf`,
			`testdata/bad-params.yaml:20: models[1].params.blank_rate: want a number, got [0.1] ([]interface {})`,
		}},
		{file: "bad-ids.yaml", want: []string{
			`testdata/bad-ids.yaml:2: name: "Bad Name" must not contain 'B'; ` + idRule,
			`testdata/bad-ids.yaml:4: characters[0].id: "../evil" must not contain ".."; ` + idRule,
			`testdata/bad-ids.yaml:6: characters[1].id: "a/b" must not contain a slash; ` + idRule,
			`testdata/bad-ids.yaml:8: characters[2].id: must be a string, got the number 2024 (quote it: "2024")`,
			`testdata/bad-ids.yaml:10: characters[3].id: must not be empty`,
			`testdata/bad-ids.yaml:12: characters[4].id: ".hidden" must start with a lowercase letter or digit`,
			`testdata/bad-ids.yaml:14: characters[5].id: "tab\there" must not contain '\t'; ` + idRule,
			`testdata/bad-ids.yaml:16: characters[6].id: is 65 characters long; the maximum is 64`,
			`testdata/bad-ids.yaml:19: prompts[0].id: "a..b" must not contain ".."; ` + idRule,
		}},
		{file: "bad-refs.yaml", want: []string{
			`testdata/bad-refs.yaml:5: characters[0].reference: refs/missing.png does not exist (paths are relative to the spec file)`,
			`testdata/bad-refs.yaml:7: characters[1].reference: refs/text.png is not a PNG, JPEG or WebP image`,
			`testdata/bad-refs.yaml:9: characters[2].reference: "../../etc/passwd" is outside the spec's directory; references must be files below it`,
			`testdata/bad-refs.yaml:11: characters[3].reference: "/etc/passwd" is an absolute path; use a path relative to the spec file`,
			`testdata/bad-refs.yaml:13: characters[4].reference: "http://example.com/mara.png": only https:// URLs or paths relative to the spec file are allowed`,
			`testdata/bad-refs.yaml:15: characters[5].reference: "data:image/png;base64,AAAA": only https:// URLs or paths relative to the spec file are allowed`,
			`testdata/bad-refs.yaml:17: characters[6].reference: "./refs/ok.png" is not a clean relative path (no "./", "//" or trailing "/")`,
			`testdata/bad-refs.yaml:19: characters[7].reference: refs is a directory, not an image`,
			`testdata/bad-refs.yaml:21: characters[8].reference: "https://user:xxxxx@example.com/mara.png" must not carry credentials; use a URL that needs none`,
			`testdata/bad-refs.yaml:23: characters[9].reference: "https:///mara.png" has no host`,
		}},
		{file: "bad-numbers.yaml", want: []string{
			`testdata/bad-numbers.yaml:12: variants: must be between 1 and 100, got -1`,
			`testdata/bad-numbers.yaml:13: seed: must be between 0 and 2147483647, got 2147483648`,
			`testdata/bad-numbers.yaml:14: budget_usd: must be greater than 0 (leave it out for no budget), got 0`,
			`testdata/bad-numbers.yaml:15: output_retries: must be between 0 and 10, got 11`,
			`testdata/bad-numbers.yaml:16: max_attempts: must be a whole number, got the number 2.5`,
			`testdata/bad-numbers.yaml:17: infra_retry_for: must be between 1m0s and 168h0m0s, got 10s`,
			`testdata/bad-numbers.yaml:19: tags.number_of_tags: must be between 0 and 20, got 21`,
		}},
		{file: "bad-prompts.yaml", want: []string{
			`testdata/bad-prompts.yaml:8: prompts[0].text: must not be empty`,
			`testdata/bad-prompts.yaml:10: prompts[1].text: must be a string, got the number 42 (quote it: "42")`,
			`testdata/bad-prompts.yaml:11: prompts[2].text: required`,
		}},
		{file: "empty-lists.yaml", want: []string{
			`testdata/empty-lists.yaml:3: characters: at least one character is required`,
			`testdata/empty-lists.yaml:4: prompts: at least one prompt is required`,
			`testdata/empty-lists.yaml:5: models: must be a list (items start with "- "), got a mapping`,
		}},
		{file: "duplicates.yaml", want: []string{
			`testdata/duplicates.yaml:6: characters[1].id: duplicate id "mara" (first used at line 4)`,
			`testdata/duplicates.yaml:11: prompts[1].id: duplicate id "piano" (first used at line 9)`,
			`testdata/duplicates.yaml:16: models[1].id: duplicate id "kontext" (first used at line 14)`,
			`testdata/duplicates.yaml:18: name: duplicate key (first at line 2)`,
		}},
		{file: "unknown-fields.yaml", want: []string{
			`testdata/unknown-fields.yaml:1: version: unsupported version 2; this likeness reads version 1`,
			`testdata/unknown-fields.yaml:1: name: required`,
			`testdata/unknown-fields.yaml:2: variant: unknown field (allowed: version, name, characters, prompts, models, variants, seed, budget_usd, output_retries, max_attempts, infra_retry_for, tags, sheets)`,
			`testdata/unknown-fields.yaml:4: characters[0].reference: required`,
			`testdata/unknown-fields.yaml:5: characters[0].refrence: unknown field (allowed: id, reference)`,
			`testdata/unknown-fields.yaml:9: prompts[0].negative: unknown field (allowed: id, text, image, mask)`,
			`testdata/unknown-fields.yaml:13: models[0].parameters: unknown field (allowed: id, model, params)`,
			`testdata/unknown-fields.yaml:15: tags.count: unknown field (allowed: number_of_tags)`,
		}},
		{file: "secret.yaml", models: testRegistry(), want: []string{
			// The secret is refused without its value; a required secret is
			// never asked for; the other required params are all named.
			`testdata/secret.yaml:12: models[0].params.mode: required parameter is missing`,
			`testdata/secret.yaml:13: models[0].params.api_key: is a secret and must not be written in a spec; set it in the environment instead`,
			`testdata/secret.yaml:14: models[0].params.steps: 99 is above the maximum 50`,
			`testdata/secret.yaml:16: models[1].params.steps: required parameter is missing`,
			`testdata/secret.yaml:16: models[1].params.mode: required parameter is missing`,
			`testdata/secret.yaml:19: models[2].params.steps: required parameter is missing`,
			`testdata/secret.yaml:19: models[2].params.mode: required parameter is missing`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			s, err := LoadFile(filepath.Join("testdata", tt.file), tt.models)
			if err == nil {
				t.Fatalf("LoadFile = %+v, want errors", s)
			}
			if s != nil {
				t.Errorf("LoadFile returned a spec along with errors")
			}
			var bad Errors
			if !errors.As(err, &bad) {
				t.Fatalf("error %v (%T) is not a spec.Errors", err, err)
			}
			if diff := cmp.Diff(tt.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if strings.Contains(err.Error(), "sk-live") {
				t.Errorf("error message leaks a secret value:\n%v", err)
			}
		})
	}
}

func TestLoadFileGood(t *testing.T) {
	t.Parallel()
	s, err := LoadFile("testdata/good.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	png, err := os.ReadFile("testdata/refs/ok.png")
	if err != nil {
		t.Fatal(err)
	}
	want := &Spec{
		File: "testdata/good.yaml", Raw: raw, Version: 1, Name: "good",
		Characters: []Character{
			{ID: "mara", Reference: Reference{
				Source: "refs/ok.png", Path: "refs/ok.png", Data: png,
				ContentType: "image/png", Ext: "png", Width: 8, Height: 6,
			}},
			{ID: "theo", Reference: Reference{Source: "https://example.com/refs/theo.png", Remote: true}},
		},
		Prompts: []Prompt{
			{ID: "piano", Text: "she is playing the piano"},
			{ID: "anime", Text: "restyle this person as anime"},
		},
		Models: []Model{
			{ID: "kontext", Ref: "sim:kontext", Provider: "sim", Params: map[string]any{"size": 512, "aspect_ratio": "1:1", "fail_rate": 0.25}},
			{ID: "ideogram", Ref: "sim:ideogram", Provider: "sim", Params: map[string]any{}},
		},
		Variants: 3, Seed: 42, BudgetUSD: 2.5, OutputRetries: 1, MaxAttempts: 4,
		InfraRetryFor: DefaultInfraRetryFor, Tags: Tags{NumberOfTags: 5},
	}
	if diff := cmp.Diff(want, s, cmpopts.IgnoreFields(Model{}, "Info"), cmpopts.IgnoreFields(Reference{}, "SHA256")); diff != "" {
		t.Errorf("LoadFile (-want +got):\n%s", diff)
	}
	if got := s.Characters[0].Reference.SHA256; got != sha256hex(png) {
		t.Errorf("reference sha256 = %s, want %s", got, sha256hex(png))
	}
	if got := s.Models[0].Info.Ref; got != "sim:kontext" {
		t.Errorf("Models[0].Info.Ref = %q, want the registry entry", got)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"spec.yaml": {Data: []byte("version: 1\nname: d\ncharacters: [{id: c, reference: https://example.com/c.png}]\nprompts: [{id: p, text: t}]\nmodels: [{id: m, model: sim:kontext}]\n")},
	}
	s, err := Load(fsys, "spec.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := []any{s.Variants, s.Seed, s.BudgetUSD, s.OutputRetries, s.MaxAttempts, s.InfraRetryFor, s.Tags.NumberOfTags}
	want := []any{1, int64(0), 0.0, 2, 5, 6 * time.Hour, 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (variants, seed, budget, output_retries, max_attempts, infra_retry_for, tags) (-want +got):\n%s", diff)
	}
}

// anyModel accepts every reference and param, so params tests see exactly
// what the parser decoded.
type anyModel struct{}

func (anyModel) Resolve(ref string, _ map[string]any) (provider.Model, error) {
	return provider.Model{Ref: ref}, nil
}

func TestParamsDecoding(t *testing.T) {
	t.Parallel()
	const spec = `version: 1
name: params
characters: [{id: c, reference: "https://example.com/c.png"}]
prompts: [{id: p, text: t}]
models:
  - id: m
    model: x:y
    params:
      int: 512
      negative: -3
      hex: 0x10
      float: 0.5
      whole_float: 2.0
      exp: 1e3
      ratio: "1:1"
      unquoted_ratio: 3:4
      bool: true
      null_value: null
      date: 2024-01-02
      list: [1, 2.5, "three"]
      nested: {a: {b: [true]}}
`
	s, err := Parse("params.yaml", []byte(spec), nil, anyModel{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"int": 512, "negative": -3, "hex": 16,
		"float": 0.5, "whole_float": 2.0, "exp": 1000.0,
		"ratio": "1:1", "unquoted_ratio": "3:4", "bool": true, "null_value": nil,
		"date":   "2024-01-02",
		"list":   []any{1, 2.5, "three"},
		"nested": map[string]any{"a": map[string]any{"b": []any{true}}},
	}
	// cmp compares dynamic types too: int must stay int, float64 float64.
	if diff := cmp.Diff(want, s.Models[0].Params); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}
}

func TestParamsRejected(t *testing.T) {
	t.Parallel()
	const spec = `version: 1
name: params
characters: [{id: c, reference: "https://example.com/c.png"}]
prompts: [{id: p, text: t}]
models:
  - id: m
    model: x:y
    params:
      big: 18446744073709551615
      nan: .nan
      bin: !!binary aGVsbG8=
      dup: 1
      dup: 2
      deep: &loop [*loop]
`
	_, err := Parse("params.yaml", []byte(spec), nil, anyModel{})
	want := []string{
		"params.yaml:9: models[0].params.big: integer 18446744073709551615 is out of range",
		"params.yaml:10: models[0].params.nan: must be a finite number, got .nan",
		"params.yaml:11: models[0].params.bin: has YAML tag !!binary; use a string, number, boolean, list or mapping",
		"params.yaml:13: models[0].params.dup: duplicate key (first at line 12)",
		"params.yaml:14: models[0].params.deep[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]: is nested more than 16 levels deep",
	}
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	if diff := cmp.Diff(want, strings.Split(err.Error(), "\n")); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}

// webp1x1 is a 1x1 lossless WebP image.
var webp1x1 = []byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00")

func encode(t *testing.T, format string, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = uint8(i)
	}
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&buf, img)
	case "jpeg":
		err = jpeg.Encode(&buf, img, nil)
	case "gif":
		err = gif.Encode(&buf, image.NewPaletted(img.Rect, color.Palette{color.Black, color.White}), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReferenceFormats(t *testing.T) {
	t.Parallel()
	pngData, jpegData, gifData := encode(t, "png", 3, 2), encode(t, "jpeg", 5, 4), encode(t, "gif", 2, 2)
	tests := []struct {
		name    string
		file    *fstest.MapFile
		want    Reference // Data and SHA256 are checked separately
		wantErr string
	}{
		{name: "png", file: &fstest.MapFile{Data: pngData},
			want: Reference{ContentType: "image/png", Ext: "png", Width: 3, Height: 2}},
		{name: "jpeg", file: &fstest.MapFile{Data: jpegData},
			want: Reference{ContentType: "image/jpeg", Ext: "jpg", Width: 5, Height: 4}},
		{name: "webp", file: &fstest.MapFile{Data: webp1x1},
			want: Reference{ContentType: "image/webp", Ext: "webp", Width: 1, Height: 1}},
		{name: "gif", file: &fstest.MapFile{Data: gifData},
			wantErr: "spec.yaml:4: characters[0].reference: dir/ref.png is a GIF image; use PNG, JPEG or WebP"},
		{name: "empty file", file: &fstest.MapFile{},
			wantErr: "spec.yaml:4: characters[0].reference: dir/ref.png is not a PNG, JPEG or WebP image"},
		{name: "too big", file: &fstest.MapFile{Data: make([]byte, MaxReferenceSize+1)},
			wantErr: "spec.yaml:4: characters[0].reference: dir/ref.png is 20.0 MiB; the maximum is 20 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The file is always named .png: the format comes from the content.
			fsys := fstest.MapFS{
				"specs/spec.yaml":   {Data: []byte("version: 1\nname: refs\ncharacters:\n  - {id: c, reference: dir/ref.png}\nprompts: [{id: p, text: t}]\nmodels: [{id: m, model: sim:kontext}]\n")},
				"specs/dir/ref.png": tt.file,
			}
			s, err := Load(fsys, "specs/spec.yaml", nil)
			if tt.wantErr != "" {
				if err == nil || err.Error() != "specs/"+tt.wantErr {
					t.Fatalf("Load error = %v, want %q", err, "specs/"+tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := s.Characters[0].Reference
			want := tt.want
			want.Source, want.Path, want.Data, want.SHA256 = "dir/ref.png", "specs/dir/ref.png", tt.file.Data, sha256hex(tt.file.Data)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("reference (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadFileRefusesSymlinkOutOfSpecDir(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.png")
	if err := os.WriteFile(secret, encode(t, "png", 2, 2), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(secret, filepath.Join(dir, "ref.png")); err != nil {
		t.Skipf("symlinks unavailable: %v", err)
	}
	specPath := filepath.Join(dir, "spec.yaml")
	spec := "version: 1\nname: link\ncharacters: [{id: c, reference: ref.png}]\nprompts: [{id: p, text: t}]\nmodels: [{id: m, model: sim:kontext}]\n"
	if err := os.WriteFile(specPath, []byte(spec), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(specPath, nil)
	var bad Errors
	if !errors.As(err, &bad) || len(bad) != 1 || bad[0].Path != "characters[0].reference" {
		t.Fatalf("LoadFile error = %v, want one error about characters[0].reference", err)
	}
	if !strings.Contains(err.Error(), "ref.png cannot be read") {
		t.Errorf("error = %q, want it to say ref.png cannot be read", err)
	}
}

func TestParseWithoutFiles(t *testing.T) {
	t.Parallel()
	spec := "version: 1\nname: up\ncharacters:\n  - {id: a, reference: https://example.com/a.png}\n  - {id: b, reference: b.png}\nprompts: [{id: p, text: t}]\nmodels: [{id: m, model: sim:kontext}]\n"
	_, err := Parse("upload.yaml", []byte(spec), nil, nil)
	want := `upload.yaml:5: characters[1].reference: "b.png": local references cannot be read here; use an https:// URL`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %q", err, want)
	}
}

func TestErrorsMatchWithErrorsAsAndIs(t *testing.T) {
	t.Parallel()
	_, err := LoadFile("testdata/does-not-exist.yaml", nil)
	var bad Errors
	if !errors.As(err, &bad) {
		t.Fatalf("missing spec: %v is not a spec.Errors", err)
	}
	var one *Error
	if !errors.As(err, &one) || one.File != "testdata/does-not-exist.yaml" || one.Line != 0 {
		t.Errorf("errors.As(*Error) = %+v", one)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false", err)
	}
	if got, want := err.Error(), "testdata/does-not-exist.yaml: cannot read the spec: file does not exist"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}

	_, err = LoadFile("testdata/bad-refs.yaml", nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing reference should unwrap to fs.ErrNotExist: %v", err)
	}
}

func TestCheckID(t *testing.T) {
	t.Parallel()
	valid := []string{"a", "mara", "kontext-pro", "v1.2", "a_b", "0", strings.Repeat("x", MaxIDLen)}
	invalid := []string{"", ".", "..", "../x", "a/b", `a\b`, "-a", "_a", ".a", "A", "a b", "a\x00", "a\nb", "é", "a..b", strings.Repeat("x", MaxIDLen+1)}
	for _, id := range valid {
		if err := CheckID(id); err != nil {
			t.Errorf("CheckID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range invalid {
		if err := CheckID(id); err == nil {
			t.Errorf("CheckID(%q) = nil, want an error", id)
		}
	}
}
