package store_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/store/storetest"
)

// testBucketName returns a fresh random bucket name.
func testBucketName() string { return "likeness-test-" + strings.ToLower(rand.Text()[:16]) }

// newS3 returns a store on a fresh bucket of the test MinIO, removed with
// its contents when the test ends.
func newS3(t *testing.T) *store.S3 {
	t.Helper()
	env := testenv.S3(t)
	bucket := testBucketName()
	s, err := store.NewS3(store.S3Config{
		Endpoint:  env.Endpoint,
		AccessKey: env.AccessKey,
		SecretKey: env.SecretKey,
		Bucket:    bucket,
		Region:    "us-east-1",
		// The same MinIO under another name, as a public endpoint is the
		// bucket under another name: URLs signed for it must fetch.
		PublicEndpoint: "http://" + otherName(t, env.Endpoint),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeBucket(t, env, bucket) })
	return s
}

// removeBucket empties and removes a test bucket with a client of its own,
// so the cleanup does not depend on the code under test.
func removeBucket(t *testing.T, env testenv.S3Env, bucket string) {
	t.Helper()
	// t.Context is already canceled when cleanups run.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := minio.New(env.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(env.AccessKey, env.SecretKey, "")})
	if err != nil {
		t.Errorf("cleanup of bucket %s: %v", bucket, err)
		return
	}
	objects := c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true})
	for rerr := range c.RemoveObjects(ctx, bucket, objects, minio.RemoveObjectsOptions{}) {
		t.Errorf("cleanup of bucket %s: remove %s: %v", bucket, rerr.ObjectName, rerr.Err)
	}
	if err := c.RemoveBucket(ctx, bucket); err != nil {
		t.Errorf("cleanup of bucket %s: %v", bucket, err)
	}
}

func TestS3Conformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Store { return newS3(t) })
}

func TestS3EnsureBucket(t *testing.T) {
	t.Parallel()
	s := newS3(t) // created the bucket once already
	// Racing creators of one bucket all succeed.
	env := testenv.S3(t)
	bucket := testBucketName()
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() {
			s2, err := store.NewS3(store.S3Config{Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey, Bucket: bucket})
			if err == nil {
				err = s2.EnsureBucket(t.Context())
			}
			errs <- err
		}()
	}
	t.Cleanup(func() { removeBucket(t, env, bucket) })
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("concurrent EnsureBucket: %v", err)
		}
	}
	if err := s.EnsureBucket(t.Context()); err != nil {
		t.Errorf("EnsureBucket on an existing bucket: %v", err)
	}
}

// otherName returns endpoint with its host spelled differently (127.0.0.1
// as localhost and back), so a URL presigned for it only works if it was
// signed for that name.
func otherName(t *testing.T, endpoint string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if host == "localhost" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return net.JoinHostPort("localhost", port)
}

func TestS3URLPublicEndpoint(t *testing.T) {
	t.Parallel()
	env := testenv.S3(t)
	private := newS3(t)
	const key = "refs/mara/3f2a.png"
	if err := private.Put(t.Context(), key, []byte("\x89PNG\r\n\x1a\nfake"), ""); err != nil {
		t.Fatal(err)
	}

	t.Run("none: no URL", func(t *testing.T) {
		t.Parallel()
		s, err := store.NewS3(store.S3Config{Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey, Bucket: private.Bucket()})
		if err != nil {
			t.Fatal(err)
		}
		if u, err := s.URL(t.Context(), key, time.Hour); !errors.Is(err, store.ErrNoPublicURL) || u != "" {
			t.Errorf("URL without a public endpoint = %q, %v; want ErrNoPublicURL", u, err)
		}
	})
	t.Run("presigned for the public host", func(t *testing.T) {
		t.Parallel()
		// No region configured: it is asked of the private endpoint once,
		// and nothing is sent to the public one (unresolvable here).
		for _, pub := range []string{"https://files.example.invalid", "files.example.invalid", "http://files.example.invalid:8080/"} {
			s, err := store.NewS3(store.S3Config{Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey,
				Bucket: private.Bucket(), PublicEndpoint: pub})
			if err != nil {
				t.Fatal(err)
			}
			raw, err := s.URL(t.Context(), key, time.Hour)
			if err != nil {
				t.Fatalf("URL with public endpoint %q: %v", pub, err)
			}
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			wantScheme, wantHost := "https", "files.example.invalid"
			if strings.HasPrefix(pub, "http://") {
				wantScheme, wantHost = "http", "files.example.invalid:8080"
			}
			if u.Scheme != wantScheme || u.Host != wantHost || !strings.Contains(u.Path, key) || u.Query().Get("X-Amz-Signature") == "" {
				t.Errorf("public endpoint %q: URL %s; want a presigned %s://%s URL for the key", pub, raw, wantScheme, wantHost)
			}
		}
	})
}

func TestS3MissingBucket(t *testing.T) {
	t.Parallel()
	env := testenv.S3(t)
	s, err := store.NewS3(store.S3Config{
		Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: env.SecretKey,
		Bucket: testBucketName() + "-never-created",
	})
	if err != nil {
		t.Fatal(err)
	}
	// A missing bucket is a configuration problem, not a missing object.
	_, err = s.Get(t.Context(), "runs/r1/spec.yaml")
	if err == nil || errors.Is(err, store.ErrNotExist) {
		t.Errorf("Get from a missing bucket: %v, want an error other than ErrNotExist", err)
	}
}

func TestS3WrongCredentials(t *testing.T) {
	t.Parallel()
	env := testenv.S3(t)
	s, err := store.NewS3(store.S3Config{Endpoint: env.Endpoint, AccessKey: env.AccessKey, SecretKey: "wrong-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := s.EnsureBucket(ctx); err == nil {
		t.Error("EnsureBucket with a wrong secret succeeded")
	}
}

func TestNewS3Config(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     store.S3Config
		wantErr string
	}{
		{name: "no endpoint", cfg: store.S3Config{}, wantErr: "endpoint is required"},
		{name: "scheme", cfg: store.S3Config{Endpoint: "http://127.0.0.1:9000"}, wantErr: "without a scheme"},
		{name: "path", cfg: store.S3Config{Endpoint: "127.0.0.1:9000/x"}, wantErr: "without a path"},
		{name: "half credentials", cfg: store.S3Config{Endpoint: "127.0.0.1:9000", AccessKey: "ak"}, wantErr: "both"},
		{name: "bad bucket", cfg: store.S3Config{Endpoint: "127.0.0.1:9000", Bucket: "Bad_Bucket"}, wantErr: "bucket"},
		{name: "public endpoint scheme", cfg: store.S3Config{Endpoint: "127.0.0.1:9000", PublicEndpoint: "s3://files.example.com"}, wantErr: "public endpoint"},
		{name: "public endpoint path", cfg: store.S3Config{Endpoint: "127.0.0.1:9000", PublicEndpoint: "https://files.example.com/likeness"}, wantErr: "without a path"},
		{name: "anonymous", cfg: store.S3Config{Endpoint: "127.0.0.1:9000"}},
		{name: "public endpoint", cfg: store.S3Config{Endpoint: "minio:9000", PublicEndpoint: "https://files.example.com"}},
		{name: "full", cfg: store.S3Config{Endpoint: "s3.example.com", AccessKey: "ak", SecretKey: "sk", Bucket: "b-1", Secure: true, Region: "eu-west-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := store.NewS3(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewS3: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.cfg.Bucket
			if want == "" {
				want = store.DefaultBucket
			}
			if s.Bucket() != want {
				t.Errorf("Bucket() = %q, want %q", s.Bucket(), want)
			}
			if got := s.Location("runs/r1/run.json"); got != "s3://"+want+"/runs/r1/run.json" {
				t.Errorf("Location = %q", got)
			}
		})
	}
}
