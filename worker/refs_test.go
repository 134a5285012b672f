package worker

import "testing"

func TestRefCacheBoundedInBytesLRU(t *testing.T) {
	t.Parallel()
	c := newRefCache(10)
	c.put("a", make([]byte, 4))
	c.put("b", make([]byte, 4))
	if _, ok := c.get("a"); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	c.put("c", make([]byte, 4)) // 12 bytes > 10: the least recently used (b) goes
	if _, ok := c.get("b"); ok {
		t.Error("b kept; the least recently used entry must go first")
	}
	for _, k := range []string{"a", "c"} {
		if _, ok := c.get(k); !ok {
			t.Errorf("%s evicted", k)
		}
	}
	c.put("huge", make([]byte, 11)) // larger than the whole cache: not kept
	if _, ok := c.get("huge"); ok || c.bytes > c.max {
		t.Errorf("cache holds %d of %d bytes after an oversized put", c.bytes, c.max)
	}
}
