package spec_test

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"testing/fstest"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/spec"
)

func ExampleLoad() {
	var ref bytes.Buffer
	_ = png.Encode(&ref, image.NewGray(image.Rect(0, 0, 64, 64)))
	fsys := fstest.MapFS{
		"sheets/mara.yaml": {Data: []byte(`version: 1
name: mara-sheet
characters:
  - id: mara
    reference: refs/mara.png
prompts:
  - id: piano
    text: "she is playing the piano"
models:
  - id: kontext
    model: sim:kontext
    params: {aspect_ratio: "3:4"}
variants: 2
seed: 42
`)},
		"sheets/refs/mara.png": {Data: ref.Bytes()},
	}

	s, err := spec.Load(fsys, "sheets/mara.yaml", provider.DefaultRegistry())
	if err != nil {
		fmt.Println(err)
		return
	}
	r := s.Characters[0].Reference
	fmt.Printf("reference: %s %dx%d\n", r.ContentType, r.Width, r.Height)
	for _, t := range s.Expand() {
		fmt.Printf("%s %s/%s/%s/%d seed=%d\n", t.ID, t.Character, t.Model, t.Prompt, t.Variant, t.Seed)
	}
	// Output:
	// reference: image/png 64x64
	// ca8e17efd28af688 mara/kontext/piano/0 seed=1432402862
	// c1f15d133770600f mara/kontext/piano/1 seed=1602047334
}

func ExampleErrors() {
	fsys := fstest.MapFS{"spec.yaml": {Data: []byte(`version: 1
name: demo
characters:
  - id: ../mara
    reference: https://example.com/mara.png
prompts:
  - id: piano
    text: "she is playing the piano"
models:
  - id: kontext
    model: repliate:black-forest-labs/flux-kontext-pro
`)}}

	_, err := spec.Load(fsys, "spec.yaml", provider.DefaultRegistry())
	var bad spec.Errors
	if errors.As(err, &bad) {
		// Bad input: the CLI prints every problem and exits with code 2.
		fmt.Println(err)
	}
	// Output:
	// spec.yaml:4: characters[0].id: "../mara" must not contain ".."; use lowercase letters, digits, '.', '_' and '-' (ids become storage path segments)
	// spec.yaml:11: models[0].model: unknown provider "repliate" (known: ark, bfl, ideogram, openai, replicate, runway, sim)
}

func ExampleRetrySeed() {
	seed := spec.DeriveSeed(42, "mara", "piano", "kontext", "0")
	fmt.Println(spec.RetrySeed(seed, 0) == seed, spec.RetrySeed(seed, 1) == seed)
	// Output: true false
}
