package sim

import (
	"bytes"
	"testing"
)

// TestVariantsReuseOutputs: with Variants set, seeds that agree modulo
// Variants get the same output (rendered once) and others differ; without
// it, every seed renders its own.
func TestVariantsReuseOutputs(t *testing.T) {
	t.Parallel()
	_, ref := setup(t)
	c, err := New(Config{Sleep: instant, Variants: 2})
	if err != nil {
		t.Fatal(err)
	}
	at := func(c *Client, seed int64) []byte {
		req := request(ref)
		req.Seed = seed
		res, _ := generate(t, c, req)
		return res.Image.Data
	}
	if !bytes.Equal(at(c, 42), at(c, 44)) {
		t.Error("seeds 42 and 44 gave different outputs with Variants 2; want one reused")
	}
	if bytes.Equal(at(c, 42), at(c, 43)) {
		t.Error("seeds 42 and 43 gave the same output with Variants 2; want two variants")
	}
	plain, err := New(Config{Sleep: instant})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(at(plain, 42), at(plain, 44)) {
		t.Error("seeds 42 and 44 gave the same output without Variants")
	}
}
