package dashboard_test

import (
	"log"
	"net/http"
	"os"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/pkg/dashboard"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/store"
)

// ExampleNew serves the dashboard over a Redis and a local directory store,
// as `likeness run --serve` does in the embedded mode. With a token, the
// run pages can pause, resume and cancel runs and raise budgets; setting
// Config.Retry (scheduler.Retry, as the CLI does) adds the retry button.
func ExampleNew() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	dir, err := store.NewDir("likeness-out")
	if err != nil {
		log.Fatal(err)
	}
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: "127.0.0.1:6379"})
	h, err := dashboard.New(dashboard.Config{
		Runs:    runstate.New(rdb, runstate.Config{}),
		Store:   dir,
		Limiter: ratelimit.New(rdb, ratelimit.Config{}),
		Queues:  insp,
		Token:   os.Getenv("LIKENESS_DASHBOARD_TOKEN"),
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", h))
}
