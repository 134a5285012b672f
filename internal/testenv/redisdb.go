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
	return RedisDBs(t, 1)
}

// RedisDBs is RedisDB for n consecutive databases, all flushed before and
// after the test, for code that takes a
// first database and uses the next ones (likeness bench --redis-db).
func RedisDBs(t testing.TB, n int) (addr string, first int) {
	t.Helper()
	addr = Redis(t)
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for {
		end, err := c.IncrBy(ctx, "likeness:test:nextdb", int64(n)).Result()
		if err != nil {
			t.Fatalf("allocate %d test Redis databases: %v", n, err)
		}
		first = 1 + int((end-int64(n))%(RedisDatabases-1))
		if first+n-1 < RedisDatabases {
			break
		}
		// The block would wrap past the last database: take the next one.
	}
	for db := first; db < first+n; db++ {
		flush := func() {
			c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
			defer c.Close()
			if err := c.FlushDB(ctx).Err(); err != nil {
				t.Errorf("flush test Redis database %d: %v", db, err)
			}
		}
		flush()
		t.Cleanup(flush)
	}
	return addr, first
}
