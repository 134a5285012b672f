package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// DefaultBucket is the bucket S3Config.Bucket defaults to.
const DefaultBucket = "likeness"

// maxPresignTTL is the longest lifetime S3 accepts for a presigned URL.
const maxPresignTTL = 7 * 24 * time.Hour

// S3Config configures NewS3. The zero value is not usable: Endpoint is
// required.
type S3Config struct {
	// Endpoint is the server's host:port, without a scheme, such as
	// "127.0.0.1:9000" or "s3.amazonaws.com". Required.
	Endpoint string
	// AccessKey and SecretKey are the credentials. Set both, or neither for
	// anonymous access.
	AccessKey string
	SecretKey string
	// Bucket holds every object. Default DefaultBucket ("likeness").
	Bucket string
	// Secure selects HTTPS. Default false (plain HTTP, as for a local MinIO).
	Secure bool
	// Region is the bucket's region. Default "": minio-go asks the server
	// once and caches the answer; set it to save that request.
	Region string
	// Transport carries the HTTP requests, for tests, proxies and tracing.
	// Default nil: minio-go's default transport.
	Transport http.RoundTripper
	// PublicEndpoint is where the bucket can be reached from the internet,
	// when it can: "https://files.example.com", "http://host:port", or a
	// bare "host[:port]" meaning https. URL presigns against it, so a hosted
	// provider may fetch a large reference itself. Default "": the bucket is
	// private (127.0.0.1:9000, compose's minio:9000), URL answers
	// ErrNoPublicURL, and workers send providers the image bytes instead,
	// never a live bucket URL no provider could use. The CLI reads it from
	// LIKENESS_S3_PUBLIC_ENDPOINT.
	PublicEndpoint string
}

// ErrNoPublicURL is returned by S3.URL when the store has no
// PublicEndpoint: no URL into the bucket would work outside the private
// network.
var ErrNoPublicURL = errors.New("the bucket has no public endpoint")

// publicEndpoint splits PublicEndpoint into minio-go's host:port and
// secure flag.
func (c S3Config) publicEndpoint() (host string, secure bool, err error) {
	raw := c.PublicEndpoint
	secure = true
	switch {
	case strings.HasPrefix(raw, "https://"):
		raw = strings.TrimPrefix(raw, "https://")
	case strings.HasPrefix(raw, "http://"):
		raw, secure = strings.TrimPrefix(raw, "http://"), false
	case strings.Contains(raw, "://"):
		return "", false, fmt.Errorf("public endpoint %q: want https://host[:port], http://host[:port] or host[:port]", c.PublicEndpoint)
	}
	raw = strings.TrimSuffix(raw, "/")
	if raw == "" || strings.ContainsAny(raw, "/?#@") {
		return "", false, fmt.Errorf("public endpoint %q: want https://host[:port], http://host[:port] or host[:port], without a path", c.PublicEndpoint)
	}
	return raw, secure, nil
}

// S3 stores objects in one bucket of an S3-compatible service (MinIO, AWS
// S3, and others) through minio-go. It is the distributed mode's store and
// is safe for concurrent use.
//
// Requests are retried by minio-go with its defaults (up to 10 attempts,
// jittered exponential backoff capped at one second); every wait between
// attempts ends early when the call's context is done.
type S3 struct {
	client *minio.Client
	bucket string
	region string
	cfg    S3Config // for the public presigning client

	mu     sync.Mutex
	public *minio.Client // presigns against PublicEndpoint; built on first use
}

// NewS3 returns a store for cfg's bucket. It does not contact the server;
// call EnsureBucket to create the bucket or check that it is reachable.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("store: new s3: %w", err)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    cfg.Secure,
		Region:    cfg.Region,
		Transport: cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("store: new s3: %w", err)
	}
	return &S3{client: client, bucket: cfg.Bucket, region: cfg.Region, cfg: cfg}, nil
}

func (c S3Config) validate() error {
	switch {
	case c.Endpoint == "":
		return errors.New("endpoint is required")
	case strings.Contains(c.Endpoint, "://"):
		return fmt.Errorf("endpoint %q must be host:port without a scheme (use Secure for https)", c.Endpoint)
	case strings.ContainsAny(c.Endpoint, "/?#"):
		return fmt.Errorf("endpoint %q must be host:port without a path", c.Endpoint)
	case (c.AccessKey == "") != (c.SecretKey == ""):
		return errors.New("set both access key and secret key, or neither")
	}
	if c.PublicEndpoint != "" {
		if _, _, err := c.publicEndpoint(); err != nil {
			return err
		}
	}
	if err := s3utils.CheckValidBucketNameStrict(c.Bucket); err != nil {
		return fmt.Errorf("bucket %q: %w", c.Bucket, err)
	}
	return nil
}

// Bucket returns the bucket's name.
func (s *S3) Bucket() string { return s.bucket }

// EnsureBucket creates the bucket unless it exists. Several processes may
// call it at once: losing the race to create the bucket is not an error.
func (s *S3) EnsureBucket(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("store: ensure bucket %s: %w", s.bucket, err)
	}
	if ok {
		return nil
	}
	err = s.client.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
	if err == nil {
		return nil
	}
	if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
		// Someone else created it between our check and our create. Under
		// BucketAlreadyExists it may belong to another account: check that we
		// can reach it.
		if ok, err2 := s.client.BucketExists(ctx, s.bucket); err2 == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("store: ensure bucket %s: %w", s.bucket, err)
}

// putOptions is shared by Put and PutIfAbsent. Objects always go up in a
// single PUT (images fit easily in memory), which keeps PutIfAbsent's
// condition atomic: a multipart upload would check it only at completion.
//
// The body is checked by its Content-MD5, not signed: over plain HTTP
// minio-go would otherwise sign it chunk by chunk (aws-chunked), which
// costs the worker and the server more CPU than the rest of a small PUT
// (measured in the overhead benchmark). Over HTTPS minio-go never signs
// the body, so nothing changes there; the request itself stays signed.
func putOptions(key string, data []byte, contentType string) minio.PutObjectOptions {
	if contentType == "" {
		contentType = contentTypeFor(key, data)
	}
	return minio.PutObjectOptions{ContentType: contentType, DisableMultipart: true,
		DisableContentSha256: true, SendContentMd5: true}
}

// Put stores data under key, replacing any existing object. An empty
// contentType is derived from the key's extension, then from the content,
// as Dir does.
func (s *S3) Put(ctx context.Context, key string, data []byte, contentType string) error {
	if err := CheckKey(key); err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	opts := putOptions(key, data, contentType)
	if _, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), opts); err != nil {
		return fmt.Errorf("store: put %s: %w", key, err)
	}
	return nil
}

// PutIfAbsent stores data under key unless an object already exists there,
// and reports whether it created the object. It sends a conditional PUT
// (If-None-Match: *), so of several concurrent callers exactly one creates
// the object.
//
// One caveat comes from retries: if the response to a successful PUT is
// lost and minio-go retries, the retry finds the object and PutIfAbsent
// reports false although this call wrote it. Callers use content-addressed
// or otherwise deterministic keys, for which either answer is safe.
func (s *S3) PutIfAbsent(ctx context.Context, key string, data []byte, contentType string) (bool, error) {
	if err := CheckKey(key); err != nil {
		return false, fmt.Errorf("store: put if absent %s: %w", key, err)
	}
	opts := putOptions(key, data, contentType)
	opts.SetMatchETagExcept("*")
	_, err := s.client.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), opts)
	if err == nil {
		return true, nil
	}
	if resp := minio.ToErrorResponse(err); resp.StatusCode == http.StatusPreconditionFailed ||
		resp.Code == "PreconditionFailed" {
		return false, nil
	}
	return false, fmt.Errorf("store: put if absent %s: %w", key, err)
}

// Get returns the object stored under key.
func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	if err := CheckKey(key); err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, err)
	}
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, mapS3Err(err))
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", key, mapS3Err(err))
	}
	return data, nil
}

// mapS3Err turns S3's "no such key" into ErrNotExist. A missing bucket stays
// an error of its own: it is a configuration problem, not a missing object.
func mapS3Err(err error) error {
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return ErrNotExist
	}
	return err
}

// Stat describes the object stored under key.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := CheckKey(key); err != nil {
		return Info{}, fmt.Errorf("store: stat %s: %w", key, err)
	}
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, fmt.Errorf("store: stat %s: %w", key, mapS3Err(err))
	}
	return s.info(oi), nil
}

func (s *S3) info(oi minio.ObjectInfo) Info {
	return Info{Key: oi.Key, Size: oi.Size, ContentType: oi.ContentType, ModTime: oi.LastModified}
}

// List describes every object whose key starts with prefix, at any depth,
// sorted by key. The prefix is a plain string prefix: "runs/a" matches
// "runs/a/x" and "runs/ab/y"; end it with a slash to mean one directory.
//
// Listings do not carry content types: List leaves Info.ContentType empty
// rather than spend a request per object; use Stat for it.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("store: list %s: %w", prefix, err)
	}
	var infos []Info
	for oi := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, fmt.Errorf("store: list %s: %w", prefix, oi.Err)
		}
		infos = append(infos, s.info(oi))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: list %s: %w", prefix, err)
	}
	// S3 lists in UTF-8 byte order already; sort anyway so other
	// S3-compatible servers cannot break the promise.
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Key, b.Key) })
	return infos, nil
}

// Delete removes the object stored under key. Deleting a missing object is
// not an error.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	if err != nil && !errors.Is(mapS3Err(err), ErrNotExist) {
		return fmt.Errorf("store: delete %s: %w", key, err)
	}
	return nil
}

// URL returns a presigned GET URL for the object on the store's
// PublicEndpoint, valid for ttl (0 means 15 minutes; at most 7 days).
// Anyone holding the URL can read the object until it expires. The object
// need not exist yet. Without a PublicEndpoint it returns an error matching
// ErrNoPublicURL: a URL into a private bucket is of no use to anyone who
// would be given one.
//
// Presigning sends nothing to the public endpoint. When S3Config.Region is
// unset, the bucket's region is asked once of the private endpoint.
func (s *S3) URL(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", fmt.Errorf("store: url %s: %w", key, err)
	}
	if ttl == 0 {
		ttl = defaultURLTTL
	}
	if ttl < time.Second || ttl > maxPresignTTL {
		return "", fmt.Errorf("store: url %s: ttl %v outside 1s..%v", key, ttl, maxPresignTTL)
	}
	if s.cfg.PublicEndpoint == "" {
		return "", fmt.Errorf("store: url %s: %w", key, ErrNoPublicURL)
	}
	public, err := s.publicClient(ctx)
	if err != nil {
		return "", fmt.Errorf("store: url %s: %w", key, err)
	}
	u, err := public.PresignedGetObject(ctx, s.bucket, key, ttl, nil)
	if err != nil {
		return "", fmt.Errorf("store: url %s: %w", key, err)
	}
	return u.String(), nil
}

// publicClient returns the client that presigns against PublicEndpoint.
// It is built with the bucket's region so that presigning never contacts
// the public endpoint (which may not be reachable from inside the network).
func (s *S3) publicClient(ctx context.Context) (*minio.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.public != nil {
		return s.public, nil
	}
	region := s.region
	if region == "" {
		r, err := s.client.GetBucketLocation(ctx, s.bucket)
		if err != nil {
			return nil, fmt.Errorf("bucket region: %w", err)
		}
		region = r
	}
	host, secure, err := s.cfg.publicEndpoint()
	if err != nil {
		return nil, err
	}
	c, err := minio.New(host, &minio.Options{
		Creds:     credentials.NewStaticV4(s.cfg.AccessKey, s.cfg.SecretKey, ""),
		Secure:    secure,
		Region:    region,
		Transport: s.cfg.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("public endpoint: %w", err)
	}
	s.public = c
	return c, nil
}

// Location returns "s3://bucket/key", for messages to a human. It returns ""
// for an invalid key.
func (s *S3) Location(key string) string {
	if CheckKey(key) != nil {
		return ""
	}
	return "s3://" + s.bucket + "/" + key
}
