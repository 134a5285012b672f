package sim

import (
	"net/http"
	"testing"

	"github.com/likeness-run/likeness/pkg/provider"
)

// A prediction created again with the exact input of an earlier one is the
// same attempt paid twice; a retry with another seed, another prompt or
// another reference is not.
func TestServerRepeatedCreates(t *testing.T) {
	t.Parallel()
	e := newSrvEnv(t, ServerConfig{Models: map[string]ModelBehavior{
		"acme/edit": {Profile: "kontext"}, "acme/other": {Profile: "kontext"},
	}, OutputSize: 64})
	other := provider.DataURI(srvReference(t, 64, 64)) // another reference than e.ref
	for _, c := range []struct {
		model string
		input map[string]any
	}{
		{"acme/edit", e.input("seed", 1)},
		{"acme/edit", e.input("seed", 1)}, // repeat
		{"acme/edit", e.input("seed", 2)},
		{"acme/edit", e.input("seed", 1, "prompt", "another prompt")},
		{"acme/edit", e.input("seed", 1, "input_image", other)},
		{"acme/other", e.input("seed", 1)},
		{"acme/edit", e.input("seed", 2)}, // repeat
	} {
		if r := e.create(c.model, c.input); r.code != http.StatusCreated {
			t.Fatalf("create: %d %s", r.code, r.body)
		}
	}
	if st := e.srv.Stats(); st.RepeatedCreates != 2 || st.Created != 7 {
		t.Errorf("repeated %d of %d created, want 2 of 7", st.RepeatedCreates, st.Created)
	}
	e.srv.Reset()
	if r := e.create("acme/edit", e.input("seed", 1)); r.code != http.StatusCreated {
		t.Fatalf("create: %d", r.code)
	}
	if st := e.srv.Stats(); st.RepeatedCreates != 0 {
		t.Errorf("after Reset: %d repeated, want 0", st.RepeatedCreates)
	}
}
