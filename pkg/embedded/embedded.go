// Package embedded runs the Redis-compatible server behind likeness's
// embedded mode: when no LIKENESS_REDIS_URL is set, `likeness run` starts one
// in-process (miniredis, which speaks enough of Redis and its Lua scripting
// for asynq), listening on loopback only, and the producer and workers use it
// exactly as they would a real Redis.
//
// miniredis expires keys only when its clock is moved, so the server advances
// that clock with wall time; asynq's leases, unique locks and server
// heartbeats then expire as they would on Redis.
package embedded

import (
	"fmt"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Redis is a running in-process Redis-compatible server.
type Redis struct {
	mr   *miniredis.Miniredis
	stop chan struct{}
	wg   sync.WaitGroup
}

// Tick is how often the server's key-expiry clock follows wall time.
const Tick = 100 * time.Millisecond

// StartRedis starts a server on 127.0.0.1 with a free port.
func StartRedis() (*Redis, error) {
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	r := &Redis{mr: mr, stop: make(chan struct{})}
	r.wg.Add(1)
	go r.advance()
	return r, nil
}

func (r *Redis) advance() {
	defer r.wg.Done()
	t := time.NewTicker(Tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			r.mr.FastForward(now.Sub(last))
			last = now
		}
	}
}

// Addr is the host:port the server listens on.
func (r *Redis) Addr() string { return r.mr.Addr() }

// Close stops the server; the data is gone.
func (r *Redis) Close() {
	close(r.stop)
	r.wg.Wait()
	r.mr.Close()
}
