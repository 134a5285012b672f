package spec

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// compileSchema compiles docs/spec.schema.json.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := jsonschema.NewCompiler().Compile("../../docs/spec.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

// yamlToJSON turns YAML into the values a JSON decoder would produce, which
// is what the schema validator expects.
func yamlToJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("to json: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("from json: %v", err)
	}
	return doc
}

func TestSchemaAcceptsExamples(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d examples, want at least quickstart.yaml and real-models.yaml", len(files))
	}
	files = append(files, "testdata/good.yaml", "testdata/good-reformatted.yaml")
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(yamlToJSON(t, data)); err != nil {
				t.Errorf("%s does not match the schema:\n%v", file, err)
			}
		})
	}
}

func TestSchemaRejectsBadSpecs(t *testing.T) {
	t.Parallel()
	sch := compileSchema(t)
	const head = "version: 1\nname: x\n"
	const chars = "characters: [{id: c, reference: refs/c.png}]\n"
	const prompts = "prompts: [{id: p, text: t}]\n"
	const models = "models: [{id: m, model: sim:kontext}]\n"
	const ok = head + chars + prompts + models
	tests := []struct {
		name string
		doc  string
		ok   bool
	}{
		{"minimal", ok, true},
		{"all fields", ok + "variants: 100\nseed: 2147483647\nbudget_usd: 0.01\noutput_retries: 0\nmax_attempts: 25\ntags: {number_of_tags: 20}\nsheets: {variants: all}\n", true},
		{"https reference", head + "characters: [{id: c, reference: \"https://example.com/c.png\"}]\n" + prompts + models, true},
		{"edit prompt", head + chars + "prompts: [{id: p, text: t, image: refs/s.png, mask: refs/m.png}]\n" + models, true},
		{"image without mask", head + chars + "prompts: [{id: p, text: t, image: refs/s.png}]\n" + models, false},
		{"mask without image", head + chars + "prompts: [{id: p, text: t, mask: refs/m.png}]\n" + models, false},
		{"edit image escape", head + chars + "prompts: [{id: p, text: t, image: ../s.png, mask: refs/m.png}]\n" + models, false},
		{"no version", "name: x\n" + chars + prompts + models, false},
		{"version 2", "version: 2\nname: x\n" + chars + prompts + models, false},
		{"no name", "version: 1\n" + chars + prompts + models, false},
		{"unknown field", ok + "variant: 2\n", false},
		{"unknown character field", head + "characters: [{id: c, reference: c.png, age: 3}]\n" + prompts + models, false},
		{"no characters", head + "characters: []\n" + prompts + models, false},
		{"no prompts", head + chars + "prompts: []\n" + models, false},
		{"no models", head + chars + prompts + "models: []\n", false},
		{"id traversal", head + "characters: [{id: ../evil, reference: c.png}]\n" + prompts + models, false},
		{"id slash", head + chars + "prompts: [{id: a/b, text: t}]\n" + models, false},
		{"id dot dot", head + chars + "prompts: [{id: a..b, text: t}]\n" + models, false},
		{"id uppercase", "version: 1\nname: Mara\n" + chars + prompts + models, false},
		{"id too long", "version: 1\nname: " + string(bytes.Repeat([]byte("a"), 65)) + "\n" + chars + prompts + models, false},
		{"reference escape", head + "characters: [{id: c, reference: ../../etc/passwd}]\n" + prompts + models, false},
		{"reference absolute", head + "characters: [{id: c, reference: /etc/passwd}]\n" + prompts + models, false},
		{"reference http", head + "characters: [{id: c, reference: \"http://example.com/c.png\"}]\n" + prompts + models, false},
		{"reference credentials", head + "characters: [{id: c, reference: \"https://u:p@example.com/c.png\"}]\n" + prompts + models, false},
		{"blank prompt", head + chars + "prompts: [{id: p, text: \"  \"}]\n" + models, false},
		{"model without provider", head + chars + prompts + "models: [{id: m, model: kontext}]\n", false},
		{"params not a mapping", head + chars + prompts + "models: [{id: m, model: sim:kontext, params: [1]}]\n", false},
		{"negative variants", ok + "variants: -1\n", false},
		{"too many variants", ok + "variants: 101\n", false},
		{"seed too big", ok + "seed: 2147483648\n", false},
		{"zero budget", ok + "budget_usd: 0\n", false},
		{"output retries", ok + "output_retries: 11\n", false},
		{"max attempts", ok + "max_attempts: 0\n", false},
		{"too many tags", ok + "tags: {number_of_tags: 21}\n", false},
		{"unknown tags field", ok + "tags: {count: 2}\n", false},
		{"sheets first", ok + "sheets: {variants: first}\n", true},
		{"sheets bad variants", ok + "sheets: {variants: 2}\n", false},
		{"unknown sheets field", ok + "sheets: {size: 3}\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := sch.Validate(yamlToJSON(t, []byte(tt.doc)))
			if got := err == nil; got != tt.ok {
				t.Errorf("valid = %v, want %v (err: %v)\n%s", got, tt.ok, err, tt.doc)
			}
		})
	}
}
