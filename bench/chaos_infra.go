package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The chaos scenario's own Redis and MinIO: processes the benchmark starts,
// kills and starts again on the same port and data directory, so that the
// workers, which reconnect by address, find the same queue and bucket.

// Credentials of the chaos scenario's own MinIO (a throwaway server on
// loopback; not secrets).
const (
	chaosS3AccessKey = "likeness-bench"
	chaosS3SecretKey = "likeness-bench-secret"
)

// infraServer is one Redis or MinIO process the scenario owns.
type infraServer struct {
	e       *env
	name    string // "redis" or "minio"; log files are <name>-<n>.log
	bin     string
	args    []string
	environ []string
	addr    string // 127.0.0.1:port the clients use
	ready   func(ctx context.Context) error
	starts  int
	p       *proc
	// downSince is when the scenario last killed or stopped it.
	downSince time.Time
}

// start starts the server and waits until it answers (Redis: its AOF
// loaded; MinIO: ready for requests), up to timeout.
func (s *infraServer) start(ctx context.Context, timeout time.Duration) error {
	s.starts++
	p, err := s.e.startBin(fmt.Sprintf("%s-%d", s.name, s.starts), s.bin, s.args, s.environ, nil)
	if err != nil {
		return err
	}
	p.infra = true
	s.p = p
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.ready(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if perr := p.exited(); perr != nil {
			return fmt.Errorf("%s: %w\n%s", s.name, perr, tail(p.log, 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s on %s not ready after %s (%v); see %s", s.name, s.addr, timeout, err, p.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// running reports whether the server's process is alive.
func (s *infraServer) running() bool { return s.p != nil && s.p.exited() == nil }

// freePort returns a loopback TCP port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lookBin resolves a configured executable: a path, or a name on PATH.
func lookBin(what, bin, hint string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("%w: %s %q not found (%s)", ErrConfig, what, bin, hint)
	}
	return p, nil
}

// newChaosRedis prepares the scenario's own redis-server on a free port
// with its data in <dir>/redis: append-only file on, fsynced every second
// (appendfsync everysec), no RDB snapshots, so a SIGKILL loses at most the
// last second of writes and a restart on the same directory reloads the
// queue.
func (e *env) newChaosRedis() (*infraServer, error) {
	bin, err := lookBin("redis-server", e.cfg.RedisServer, "install redis-server, or pass --redis-server")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("bench: pick a port for redis: %w", err)
	}
	dir := filepath.Join(e.dir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s := &infraServer{
		e: e, name: "redis", bin: bin, addr: addr, environ: e.cfg.Env,
		args: []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
			"--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--databases", "16"},
	}
	s.ready = func(ctx context.Context) error {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 500 * time.Millisecond})
		defer c.Close()
		return c.Ping(ctx).Err() // "LOADING" while the AOF is read
	}
	return s, nil
}

// newChaosMinIO prepares the scenario's own MinIO on a free port with its
// data in <dir>/minio, console and update checks off.
func (e *env) newChaosMinIO() (*infraServer, error) {
	bin, err := lookBin("MinIO", e.cfg.MinIO, "scripts/bench.sh builds it into the cache; or pass --minio")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("bench: pick a port for minio: %w", err)
	}
	console, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("bench: pick a port for minio: %w", err)
	}
	dir := filepath.Join(e.dir, "minio")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	s := &infraServer{
		e: e, name: "minio", bin: bin, addr: addr,
		args: []string{"server", dir, "--address", addr, "--console-address", "127.0.0.1:" + strconv.Itoa(console), "--quiet"},
		environ: append(append([]string(nil), e.cfg.Env...),
			"MINIO_ROOT_USER="+chaosS3AccessKey, "MINIO_ROOT_PASSWORD="+chaosS3SecretKey,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CALLHOME_ENABLE=off"),
	}
	client := &http.Client{Timeout: time.Second}
	s.ready = func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/minio/health/ready", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New("minio health: " + resp.Status)
		}
		// Ready can come before the object layer is: an anonymous
		// ListBuckets answers 503 (XMinioServerNotInitialized) until it is,
		// and 403 after.
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		if err != nil {
			return err
		}
		resp, err = client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			return errors.New("minio: server not initialized yet")
		}
		return nil
	}
	return s, nil
}
