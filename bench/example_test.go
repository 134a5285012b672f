package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/likeness-run/likeness/bench"
)

// Run one scenario against a real Redis and MinIO, as `likeness bench`
// does, and print its JSON line. (Not run by go test: it needs the servers
// and takes minutes; scripts/bench.sh starts them.)
func ExampleRun() {
	exe, _ := os.Executable() // the likeness binary in the CLI
	res, err := bench.Run(context.Background(), bench.Config{
		Executable: exe,
		RedisURL:   os.Getenv("LIKENESS_REDIS_URL"),
		S3: bench.S3Config{
			Endpoint:  os.Getenv("LIKENESS_S3_ENDPOINT"),
			AccessKey: os.Getenv("LIKENESS_S3_ACCESS_KEY"),
			SecretKey: os.Getenv("LIKENESS_S3_SECRET_KEY"),
		},
		Progress: os.Stderr,
	}, bench.ScenarioLimits)
	if err != nil {
		fmt.Println(err)
		return
	}
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	if err := res.Check(); err != nil {
		fmt.Println("missed:", err)
	}
}
