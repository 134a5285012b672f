package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestKeysExpireWithWallTime(t *testing.T) {
	t.Parallel()
	r, err := StartRedis()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, "k").Result(); n != 1 {
		t.Fatalf("key missing right after SET")
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := rdb.Exists(ctx, "k").Result(); n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("key with a 300ms TTL still exists after 3s of wall time")
}
