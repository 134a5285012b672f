// Package testenv finds the real Redis and MinIO that scripts/test.sh starts
// for integration tests, through LIKENESS_TEST_* environment variables.
//
// When a variable is missing the test is skipped with a message saying how
// to run it, unless LIKENESS_TEST_REQUIRE_INFRA=1 (set by scripts/test.sh
// and so by CI), in which case it fails: integration tests cannot silently
// skip where the infrastructure is supposed to be.
package testenv

import (
	"os"
	"strings"
	"testing"
)

// Environment variables read by this package.
const (
	RedisAddrVar    = "LIKENESS_TEST_REDIS_ADDR"
	S3EndpointVar   = "LIKENESS_TEST_S3_ENDPOINT"
	S3AccessKeyVar  = "LIKENESS_TEST_S3_ACCESS_KEY"
	S3SecretKeyVar  = "LIKENESS_TEST_S3_SECRET_KEY"
	RequireInfraVar = "LIKENESS_TEST_REQUIRE_INFRA"
)

// S3Env is how to reach the test MinIO.
type S3Env struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string
	SecretKey string
}

// RequireInfra reports whether missing infrastructure fails tests instead
// of skipping them.
func RequireInfra() bool { return os.Getenv(RequireInfraVar) == "1" }

// Redis returns the test Redis server's host:port.
func Redis(t testing.TB) string {
	t.Helper()
	return lookup(t, "Redis", RedisAddrVar)[0]
}

// S3 returns how to reach the test MinIO. Each test should use a bucket of
// its own.
func S3(t testing.TB) S3Env {
	t.Helper()
	v := lookup(t, "MinIO", S3EndpointVar, S3AccessKeyVar, S3SecretKeyVar)
	return S3Env{Endpoint: v[0], AccessKey: v[1], SecretKey: v[2]}
}

// lookup returns the values of names, or skips (fails under
// RequireInfra) naming every missing one.
func lookup(t testing.TB, what string, names ...string) []string {
	t.Helper()
	vals := make([]string, len(names))
	var missing []string
	for i, name := range names {
		vals[i] = os.Getenv(name)
		if vals[i] == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return vals
	}
	msg := "needs a real " + what + ": " + strings.Join(missing, ", ") + " not set; run scripts/test.sh, which starts one"
	if RequireInfra() {
		t.Fatalf("%s (%s=1 forbids skipping)", msg, RequireInfraVar)
		return vals
	}
	t.Skip(msg)
	return vals // reached only by fakes: Skip and Fatalf end the test
}
