package testenv

import (
	"strings"
	"testing"
)

// recorder stands in for a test to see whether lookup skips or fails.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Skip(args ...any)                  { r.skipped = args[0].(string) }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = format }

func TestS3(t *testing.T) {
	tests := []struct {
		name              string
		endpoint, require string
		wantSkip, wantErr bool
	}{
		{name: "set", endpoint: "127.0.0.1:9000"},
		{name: "missing skips", wantSkip: true},
		{name: "missing fails when required", require: "1", wantErr: true},
		{name: "set and required", endpoint: "127.0.0.1:9000", require: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(S3EndpointVar, tt.endpoint)
			t.Setenv(S3AccessKeyVar, "ak")
			t.Setenv(S3SecretKeyVar, "sk")
			t.Setenv(RequireInfraVar, tt.require)
			r := &recorder{TB: t}
			env := S3(r)
			if got := r.skipped != ""; got != tt.wantSkip {
				t.Errorf("skipped = %v (%q), want %v", got, r.skipped, tt.wantSkip)
			}
			if got := r.failed != ""; got != tt.wantErr {
				t.Errorf("failed = %v, want %v", got, tt.wantErr)
			}
			if tt.wantSkip && !strings.Contains(r.skipped, S3EndpointVar) {
				t.Errorf("skip message %q does not name %s", r.skipped, S3EndpointVar)
			}
			if !tt.wantSkip && !tt.wantErr && env != (S3Env{"127.0.0.1:9000", "ak", "sk"}) {
				t.Errorf("S3() = %+v", env)
			}
		})
	}
}

func TestRedis(t *testing.T) {
	t.Setenv(RedisAddrVar, "127.0.0.1:6379")
	if got := Redis(t); got != "127.0.0.1:6379" {
		t.Errorf("Redis() = %q", got)
	}
}
