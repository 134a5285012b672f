package testenv

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// RedisDatabases is how many databases scripts/test.sh gives the test Redis
// (redis-server --databases). Database 0 holds only the allocation counter.
const RedisDatabases = 256

// RedisDB returns the test Redis address and a database number of the
// test's own, empty, and flushed again when the test ends. Tests in every
// package and process draw from one counter, so parallel tests never see
// each other's queues.
func RedisDB(t testing.TB) (addr string, db int) {
	t.Helper()
	addr = Redis(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	n, err := c.Incr(ctx, "likeness:test:nextdb").Result()
	if err != nil {
		t.Fatalf("allocate a test Redis database: %v", err)
	}
	db = 1 + int((n-1)%(RedisDatabases-1))
	flush := func() {
		c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
		defer c.Close()
		if err := c.FlushDB(ctx).Err(); err != nil {
			t.Errorf("flush test Redis database %d: %v", db, err)
		}
	}
	flush()
	t.Cleanup(flush)
	return addr, db
}
