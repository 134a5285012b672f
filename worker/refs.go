package worker

import (
	"container/list"
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/likeness-run/likeness/pkg/provider"
)

// reference loads a reference image (or an edit's image or mask) by key,
// from memory when this worker has used it lately.
func (w *Worker) reference(ctx context.Context, key string) (provider.Image, error) {
	data, ok := w.refs.get(key)
	if !ok {
		var err error
		data, err = w.cfg.Store.Get(ctx, key)
		if err != nil {
			return provider.Image{}, err
		}
		w.refs.put(key, data)
	}
	img := provider.Image{Data: data, ContentType: http.DetectContentType(data)}
	// Hosted providers may fetch large references by URL, but only from a
	// bucket the operator made public (LIKENESS_S3_PUBLIC_ENDPOINT): a
	// private bucket answers store.ErrNoPublicURL, a local directory a
	// file:// URL, and adapters send the bytes instead.
	if u, err := w.cfg.Store.URL(ctx, key, 2*time.Hour); err == nil && strings.HasPrefix(u, "http") {
		img.URL = u
	}
	return img, nil
}

// refCache keeps recently used reference images in memory, up to a number
// of bytes: every task of a character shares one reference, so a worker
// fetches it once, and a run with many large references cannot grow the
// worker without bound.
type refCache struct {
	mu    sync.Mutex
	max   int64
	bytes int64
	order *list.List // of *refEntry, most recently used first
	m     map[string]*list.Element
}

type refEntry struct {
	key  string
	data []byte
}

func newRefCache(maxBytes int64) *refCache {
	return &refCache{max: maxBytes, order: list.New(), m: map[string]*list.Element{}}
}

func (c *refCache) get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*refEntry).data, true
}

func (c *refCache) put(key string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; ok || int64(len(data)) > c.max {
		return
	}
	c.m[key] = c.order.PushFront(&refEntry{key: key, data: data})
	c.bytes += int64(len(data))
	for c.bytes > c.max {
		e := c.order.Back()
		ent := e.Value.(*refEntry)
		c.order.Remove(e)
		delete(c.m, ent.key)
		c.bytes -= int64(len(ent.data))
	}
}
