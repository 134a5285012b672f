package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
)

// proc is a likeness subprocess with its stderr in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // set before done closes
	// infra marks Redis and MinIO processes, stopped after the others so
	// that workers shut down against live servers.
	infra bool
}

// start runs the likeness executable with args in its own process group
// (so a Ctrl-C reaches it only through us, and it is told to stop in
// order), with the parent-death signal set where the platform has one.
// Lines of its stderr go to <dir>/<name>.log and, when onLine is set, to
// onLine.
func (e *env) start(name string, args []string, environ []string, onLine func(string)) (*proc, error) {
	return e.startBin(name, e.cfg.Executable, args, environ, onLine)
}

// startBin is start for any executable (redis-server, minio).
func (e *env) startBin(name, bin string, args []string, environ []string, onLine func(string)) (*proc, error) {
	logPath, err := e.writeFile(name+".log", nil)
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = environ
	cmd.Stdout = logFile
	cmd.SysProcAttr = sysProcAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	e.mu.Lock()
	e.processes = append(e.processes, p)
	e.mu.Unlock()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if onLine != nil {
				onLine(line)
			}
		}
		_, _ = io.Copy(logFile, stderr)
	}()
	go func() {
		<-copied
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// exited returns an error if the process has ended.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited early (%v); see %s", p.name, p.err, p.log)
	default:
		return nil
	}
}

// kill sends SIGKILL (no chance to clean up) and waits for the exit.
func (p *proc) kill() {
	if p.exited() == nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// stop sends SIGTERM, waits up to grace for the exit, then kills.
func (p *proc) stop(grace time.Duration) { stopAll([]*proc{p}, grace) }

// stopAll sends SIGTERM to every running process, waits up to grace for
// them to exit, then kills the rest.
func stopAll(ps []*proc, grace time.Duration) {
	for _, p := range ps {
		if p.exited() == nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(grace)
	for _, p := range ps {
		select {
		case <-p.done:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// startSim starts `likeness sim-provider` on a free loopback port with the
// models file config and returns its base URL (http://127.0.0.1:PORT).
// extra are more sim-provider flags.
func (e *env) startSim(ctx context.Context, config []byte, token string, seed int64, extra ...string) (string, error) {
	path, err := e.writeFile("sim-models.yaml", config)
	if err != nil {
		return "", err
	}
	addr := make(chan string, 1)
	var once sync.Once
	p, err := e.start("sim-provider", append([]string{"sim-provider", "--listen", "127.0.0.1:0", "--config", path,
		"--token", token, "--seed", fmt.Sprint(seed), "--output-size", "64", "--log-level", "info"}, extra...),
		e.subprocessEnv(), func(line string) {
			var l struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" && l.Addr != "" {
				once.Do(func() { addr <- l.Addr })
			}
		})
	if err != nil {
		return "", err
	}
	select {
	case a := <-addr:
		base := "http://" + a
		e.progressf("sim-provider serving on %s", base)
		return base, nil
	case <-p.done:
		return "", p.exited()
	case <-time.After(30 * time.Second):
		return "", fmt.Errorf("sim-provider did not start in 30s; see %s", p.log)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// startWorkers starts n `likeness worker` processes with environ and the
// flags in extra, and waits until each serves queue.
func (e *env) startWorkers(ctx context.Context, n, concurrency int, environ []string, queue string, extra ...string) ([]*proc, error) {
	var ps []*proc
	for i := range n {
		args := append([]string{"worker", "--concurrency", fmt.Sprint(concurrency), "--shutdown-timeout", "5s"}, extra...)
		p, err := e.start(fmt.Sprintf("worker-%d", i+1), args, environ, nil)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	insp := asynq.NewInspector(e.redisOpt)
	defer insp.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		servers, err := insp.Servers()
		if err == nil {
			up := 0
			for _, s := range servers {
				if _, ok := s.Queues[queue]; ok && s.Status == "active" {
					up++
				}
			}
			if up >= n {
				e.progressf("%d workers serving queue %s (concurrency %d each)", n, queue, concurrency)
				return ps, nil
			}
		}
		for _, p := range ps {
			if err := p.exited(); err != nil {
				return nil, errors.New(err.Error() + "\n" + tail(p.log, 20))
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("workers not serving %s after 60s; see %s", queue, e.dir)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// anyExited returns an error naming the first process that ended.
func anyExited(ps []*proc) error {
	for _, p := range ps {
		if err := p.exited(); err != nil {
			return errors.New(err.Error() + "\n" + tail(p.log, 20))
		}
	}
	return nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
