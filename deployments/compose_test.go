package deployments

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
	yaml "go.yaml.in/yaml/v3"
)

// composeFile is the compose file users run, relative to this package.
const composeFile = repoRoot + "/docker-compose.yml"

// loadCompose loads docker-compose.yml the way `docker compose` does, with
// schema validation and consistency checks on, interpolating ${VAR} from env
// alone (nil: nothing set, so every default applies) rather than from the
// environment the test happens to run in.
func loadCompose(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	wd, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	mapping := types.Mapping{}
	maps.Copy(mapping, env)
	project, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  wd,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(wd, "docker-compose.yml"), Content: data}},
		Environment: mapping,
	}, func(o *loader.Options) {
		o.SkipValidation = false
		o.SkipConsistencyCheck = false
		o.SkipNormalization = false
		o.SkipInterpolation = false
		o.ResolvePaths = true
	})
	if err != nil {
		t.Fatalf("load %s: %v", composeFile, err)
	}
	return project
}

func TestCompose(t *testing.T) {
	t.Parallel()
	envs := []struct {
		name string
		env  map[string]string
	}{
		{"defaults", nil},
		{"overrides", map[string]string{
			"MINIO_ROOT_USER":     "alice",
			"MINIO_ROOT_PASSWORD": "a-much-longer-password",
			"LIKENESS_S3_BUCKET":  "sheets",
			"REPLICATE_API_TOKEN": "r8_test",
		}},
	}
	for _, e := range envs {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			checkCompose(t, loadCompose(t, e.env), e.env)
		})
	}
}

// checkCompose asserts what a user of `docker compose up` depends on.
func checkCompose(t *testing.T, p *types.Project, hostEnv map[string]string) {
	t.Helper()
	service := func(t *testing.T, name string) types.ServiceConfig {
		t.Helper()
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	env := envOf

	t.Run("services", func(t *testing.T) {
		// Only roles that exist in code, and the telemetry backends; a later
		// issue adds the scheduler.
		want := []string{"jaeger", "minio", "minio-init", "prometheus", "redis", "scheduler", "serve", "worker"}
		if diff := cmp.Diff(want, slices.Sorted(maps.Keys(p.Services))); diff != "" {
			t.Errorf("services (-want +got):\n%s", diff)
		}
	})

	t.Run("images pinned", func(t *testing.T) {
		for name, s := range p.Services {
			if s.Image == "" {
				t.Errorf("service %s has no image name", name)
				continue
			}
			checkPinned(t, "service "+name, s.Image)
		}
	})

	t.Run("ports on loopback only", func(t *testing.T) {
		for name, s := range p.Services {
			for _, port := range s.Ports {
				if port.HostIP != "127.0.0.1" {
					t.Errorf("service %s publishes %d on %q; bind it to 127.0.0.1", name, port.Target, port.HostIP)
				}
			}
		}
	})

	t.Run("published ports", func(t *testing.T) {
		// Exactly the UIs and the S3 API a user opens; the workers' metrics
		// and Jaeger's OTLP receivers stay inside the compose network.
		want := map[string][]string{
			"jaeger":     {"16686->16686"},
			"minio":      {"9000->9000", "9001->9001"},
			"prometheus": {"9090->9090"},
			"serve":      {"8080->8080"},
		}
		got := map[string][]string{}
		byHost := map[string]string{}
		for name, s := range p.Services {
			for _, port := range s.Ports {
				got[name] = append(got[name], port.Published+"->"+strconv.Itoa(int(port.Target)))
				if other, ok := byHost[port.Published]; ok {
					t.Errorf("services %s and %s both publish host port %s", other, name, port.Published)
				}
				byHost[port.Published] = name
			}
			slices.Sort(got[name])
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("published ports, host->container (-want +got):\n%s", diff)
		}
	})

	t.Run("healthy dependencies have healthchecks", func(t *testing.T) {
		for name, s := range p.Services {
			for dep, d := range s.DependsOn {
				if _, ok := p.Services[dep]; !ok {
					t.Errorf("service %s depends on unknown service %s", name, dep)
				}
				hc := p.Services[dep].HealthCheck
				if d.Condition == types.ServiceConditionHealthy && (hc == nil || hc.Disable || len(hc.Test) == 0) {
					t.Errorf("service %s waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
				}
			}
		}
	})

	t.Run("redis persists the queue", func(t *testing.T) {
		r := service(t, "redis")
		cmdline := strings.Join(r.Command, " ")
		if !strings.Contains(cmdline, "--appendonly yes") {
			t.Errorf("redis command %q: want --appendonly yes so queued tasks survive a restart", r.Command)
		}
		checkNamedVolume(t, p, r, "/data")
	})

	t.Run("minio", func(t *testing.T) {
		m := service(t, "minio")
		checkNamedVolume(t, p, m, "/data")
		// MinIO refuses to start with shorter credentials.
		if u := env(m, "MINIO_ROOT_USER"); len(u) < 3 {
			t.Errorf("MINIO_ROOT_USER %q: MinIO needs at least 3 characters", u)
		}
		if pw := env(m, "MINIO_ROOT_PASSWORD"); len(pw) < 8 {
			t.Errorf("MINIO_ROOT_PASSWORD %q: MinIO needs at least 8 characters", pw)
		}
	})

	t.Run("minio-init creates the worker's bucket", func(t *testing.T) {
		mi, w, m := service(t, "minio-init"), service(t, "worker"), service(t, "minio")
		if d, ok := mi.DependsOn["minio"]; !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("minio-init depends_on %v; want minio: service_healthy", mi.DependsOn)
		}
		script := strings.Join(append(slices.Clone(mi.Entrypoint), mi.Command...), " ")
		if !strings.Contains(script, "mc mb --ignore-existing") {
			t.Errorf("minio-init runs %q; want an idempotent `mc mb --ignore-existing`", script)
		}
		if got, want := env(mi, "LIKENESS_S3_BUCKET"), env(w, "LIKENESS_S3_BUCKET"); got != want || got == "" {
			t.Errorf("minio-init creates bucket %q, worker uses %q", got, want)
		}
		for _, k := range []string{"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"} {
			if env(mi, k) != env(m, k) {
				t.Errorf("minio-init %s %q differs from minio's %q", k, env(mi, k), env(m, k))
			}
		}
		if hostEnv["LIKENESS_S3_BUCKET"] != "" && env(w, "LIKENESS_S3_BUCKET") != hostEnv["LIKENESS_S3_BUCKET"] {
			t.Errorf("LIKENESS_S3_BUCKET=%s on the host did not reach the worker (%q)", hostEnv["LIKENESS_S3_BUCKET"], env(w, "LIKENESS_S3_BUCKET"))
		}
	})

	t.Run("worker wiring", func(t *testing.T) {
		w, m := service(t, "worker"), service(t, "minio")

		redisURL, err := url.Parse(env(w, "LIKENESS_REDIS_URL"))
		if err != nil || redisURL.Scheme != "redis" || redisURL.Hostname() != "redis" || redisURL.Port() != "6379" {
			t.Errorf("LIKENESS_REDIS_URL %q; want redis://redis:6379/<db>", env(w, "LIKENESS_REDIS_URL"))
		}
		host, port, err := net.SplitHostPort(env(w, "LIKENESS_S3_ENDPOINT"))
		if err != nil || host != "minio" || port != "9000" {
			t.Errorf("LIKENESS_S3_ENDPOINT %q; want minio:9000 (host:port, no scheme)", env(w, "LIKENESS_S3_ENDPOINT"))
		}
		if secure, err := strconv.ParseBool(env(w, "LIKENESS_S3_SECURE")); err != nil || secure {
			t.Errorf("LIKENESS_S3_SECURE %q; the compose MinIO speaks plain HTTP", env(w, "LIKENESS_S3_SECURE"))
		}
		if env(w, "LIKENESS_S3_ACCESS_KEY") != env(m, "MINIO_ROOT_USER") || env(w, "LIKENESS_S3_SECRET_KEY") != env(m, "MINIO_ROOT_PASSWORD") {
			t.Errorf("worker S3 credentials %q/%q differ from MinIO's %q/%q",
				env(w, "LIKENESS_S3_ACCESS_KEY"), env(w, "LIKENESS_S3_SECRET_KEY"), env(m, "MINIO_ROOT_USER"), env(m, "MINIO_ROOT_PASSWORD"))
		}
		if _, err := listenPort(env(w, "LIKENESS_METRICS_ADDR")); err != nil {
			t.Errorf("worker LIKENESS_METRICS_ADDR: %v", err)
		}
		for _, s := range likenessServices(t, p) {
			for key := range s.Environment {
				if !envDocumented(key) {
					t.Errorf("%s sets %s, which likeness does not read (typo?)", s.Name, key)
				}
			}
		}
		for _, key := range []string{"REPLICATE_API_TOKEN", "OPENAI_API_KEY", "BFL_API_KEY", "RUNWAYML_API_SECRET", "IDEOGRAM_API_KEY", "ARK_API_KEY"} {
			if _, ok := w.Environment[key]; !ok {
				t.Errorf("worker does not pass %s through from the host", key)
			} else if got := env(w, key); got != hostEnv[key] {
				t.Errorf("worker %s = %q, host has %q", key, got, hostEnv[key])
			}
		}
	})

	t.Run("worker lifecycle", func(t *testing.T) {
		w := service(t, "worker")
		checkLikenessDependsOn(t, w)
		if len(w.Command) == 0 || w.Command[0] != "worker" {
			t.Errorf("worker command %q; want it to start with the worker subcommand", w.Command)
		}
		if w.Deploy == nil || w.Deploy.Replicas == nil || *w.Deploy.Replicas < 1 {
			t.Errorf("worker has no deploy.replicas; --scale needs a service that can run several copies")
		}
		if w.ContainerName != "" {
			t.Errorf("worker sets container_name %q, which makes scaling impossible", w.ContainerName)
		}
		if w.StopGracePeriod == nil || time.Duration(*w.StopGracePeriod) < time.Minute {
			t.Errorf("worker stop_grace_period %v; in-flight provider calls need time to finish", w.StopGracePeriod)
		}
		if w.Restart != types.RestartPolicyUnlessStopped {
			t.Errorf("worker restart %q, want %s", w.Restart, types.RestartPolicyUnlessStopped)
		}
	})

	t.Run("serve", func(t *testing.T) {
		sv := service(t, "serve")
		// serve reads what the workers write; the dashboard never calls a
		// provider.
		checkBesideWorkers(t, sv, service(t, "worker"))
		port, err := listenPort(flagValue(sv.Command, "--addr"))
		if err != nil {
			t.Fatalf("serve --addr: %v", err)
		}
		if !slices.ContainsFunc(sv.Ports, func(p types.ServicePortConfig) bool { return int(p.Target) == port }) {
			t.Errorf("serve listens on %d but publishes %v", port, sv.Ports)
		}
	})

	t.Run("scheduler", func(t *testing.T) {
		sc := service(t, "scheduler")
		// It submits specs (cron) and enqueues finalizes; submitting never
		// calls a provider.
		checkBesideWorkers(t, sc, service(t, "worker"))
		if d, err := time.ParseDuration(flagValue(sc.Command, "--sweep-every")); err != nil || d <= 0 {
			t.Errorf("scheduler --sweep-every %q: %v", flagValue(sc.Command, "--sweep-every"), err)
		}
	})

	t.Run("traces go to jaeger", func(t *testing.T) {
		names := map[string]string{} // OTEL_SERVICE_NAME -> compose service
		for _, s := range likenessServices(t, p) {
			if got := env(s, "OTEL_TRACES_EXPORTER"); got != "otlp" {
				t.Errorf("%s OTEL_TRACES_EXPORTER %q, want otlp", s.Name, got)
			}
			// Prometheus scrapes /metrics; pushing OTLP metrics at Jaeger,
			// which takes only traces, would fail on every export.
			if got := env(s, "OTEL_METRICS_EXPORTER"); got != "none" {
				t.Errorf("%s OTEL_METRICS_EXPORTER %q, want none", s.Name, got)
			}
			wantPort := map[string]string{"http/protobuf": "4318", "grpc": "4317"}[env(s, "OTEL_EXPORTER_OTLP_PROTOCOL")]
			if wantPort == "" {
				t.Errorf("%s OTEL_EXPORTER_OTLP_PROTOCOL %q, want http/protobuf or grpc", s.Name, env(s, "OTEL_EXPORTER_OTLP_PROTOCOL"))
			}
			u, err := url.Parse(env(s, "OTEL_EXPORTER_OTLP_ENDPOINT"))
			if err != nil || u.Scheme != "http" || u.Hostname() != "jaeger" || u.Port() != wantPort || strings.Trim(u.Path, "/") != "" {
				t.Errorf("%s OTEL_EXPORTER_OTLP_ENDPOINT %q; want http://jaeger:%s, Jaeger's OTLP port for %s",
					s.Name, env(s, "OTEL_EXPORTER_OTLP_ENDPOINT"), wantPort, env(s, "OTEL_EXPORTER_OTLP_PROTOCOL"))
			}
			name := env(s, "OTEL_SERVICE_NAME")
			if name == "" {
				t.Errorf("%s has no OTEL_SERVICE_NAME", s.Name)
			} else if other, ok := names[name]; ok {
				t.Errorf("%s and %s both report as service %q", other, s.Name, name)
			}
			names[name] = s.Name
		}
	})

	t.Run("prometheus scrapes every worker and serve", func(t *testing.T) {
		pr, w, sv := service(t, "prometheus"), service(t, "worker"), service(t, "serve")
		root, err := filepath.Abs(repoRoot)
		if err != nil {
			t.Fatal(err)
		}
		config := flagValue(pr.Command, "--config.file")
		if config == "" {
			t.Fatalf("prometheus command %q names no --config.file", pr.Command)
		}
		mounted := slices.ContainsFunc(pr.Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Target == config && v.Type == types.VolumeTypeBind && v.ReadOnly &&
				v.Source == filepath.Join(root, filepath.FromSlash(prometheusConfig))
		})
		if !mounted {
			t.Errorf("prometheus reads %s, but %s is not bound there read-only: %+v", config, prometheusConfig, pr.Volumes)
		}
		checkNamedVolume(t, p, pr, flagValue(pr.Command, "--storage.tsdb.path"))

		workerPort, err := listenPort(env(w, "LIKENESS_METRICS_ADDR"))
		if err != nil {
			t.Fatalf("worker LIKENESS_METRICS_ADDR: %v", err)
		}
		servePort, err := listenPort(flagValue(sv.Command, "--addr"))
		if err != nil {
			t.Fatalf("serve --addr: %v", err)
		}
		cfg := loadPrometheus(t)
		var workers, serves int
		for _, job := range cfg.ScrapeConfigs {
			if job.MetricsPath != "" && job.MetricsPath != "/metrics" {
				t.Errorf("job %s scrapes %s; likeness serves /metrics", job.JobName, job.MetricsPath)
			}
			for _, sd := range job.DNSSDConfigs {
				if !slices.Contains(sd.Names, "worker") {
					continue
				}
				workers++
				// One A record per replica: --scale is followed. SRV
				// records are not served by Docker's DNS.
				if sd.Type != "A" || sd.Port != workerPort {
					t.Errorf("job %s finds workers by %s records on port %d; want A records and port %d (LIKENESS_METRICS_ADDR)",
						job.JobName, sd.Type, sd.Port, workerPort)
				}
			}
			for _, sc := range job.StaticConfigs {
				for _, target := range sc.Targets {
					host, port, err := net.SplitHostPort(target)
					if err != nil {
						t.Errorf("job %s target %q: %v", job.JobName, target, err)
						continue
					}
					if _, ok := p.Services[host]; !ok {
						t.Errorf("job %s scrapes %s, which is not a compose service", job.JobName, target)
					}
					switch host {
					case "serve":
						serves++
						if port != strconv.Itoa(servePort) {
							t.Errorf("job %s scrapes %s; serve listens on %d", job.JobName, target, servePort)
						}
					case "worker":
						t.Errorf("job %s scrapes %s statically, which reaches one replica; use dns_sd_configs", job.JobName, target)
					}
				}
			}
		}
		if workers != 1 || serves != 1 {
			t.Errorf("prometheus.yml finds workers in %d jobs and serve in %d; want each exactly once", workers, serves)
		}
	})

	t.Run("worker builds from deployments/Dockerfile", func(t *testing.T) {
		w := service(t, "worker")
		if w.Build == nil {
			t.Fatal("worker has no build section")
		}
		root, err := filepath.Abs(repoRoot)
		if err != nil {
			t.Fatal(err)
		}
		if w.Build.Context != root {
			t.Errorf("worker build context %s, want the repository root %s", w.Build.Context, root)
		}
		dockerfile := filepath.Join(w.Build.Context, w.Build.Dockerfile)
		if want := filepath.Join(root, "deployments", "Dockerfile"); dockerfile != want {
			t.Errorf("worker builds %s, want %s", dockerfile, want)
		}
		if _, err := os.Stat(dockerfile); err != nil {
			t.Error(err)
		}
	})

	t.Run("specs mounted read-only", func(t *testing.T) {
		w := service(t, "worker")
		root, err := filepath.Abs(repoRoot)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range w.Volumes {
			if v.Target == "/specs" {
				if v.Type != types.VolumeTypeBind || v.Source != filepath.Join(root, "examples") || !v.ReadOnly {
					t.Errorf("/specs mount %+v; want ./examples bound read-only", v)
				}
				return
			}
		}
		t.Error("worker does not mount ./examples at /specs")
	})
}

// checkLikenessDependsOn fails t unless s, a service running the likeness
// image, starts after Redis is healthy, the bucket exists and Jaeger runs
// (exporters connect lazily, so started is enough).
// envOf is a service's value of an environment variable, "" when unset.
func envOf(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

// checkBesideWorkers checks a likeness service that is not a worker: it
// runs the image the worker builds, with its own name as the subcommand;
// shares the workers' queue and bucket; is given no provider key; waits for
// what the workers wait for; writes nothing; and restarts.
func checkBesideWorkers(t *testing.T, s, w types.ServiceConfig) {
	t.Helper()
	if s.Image != w.Image || s.Build != nil {
		t.Errorf("%s runs image %q (build %v); want the worker's %q, which the worker builds", s.Name, s.Image, s.Build != nil, w.Image)
	}
	if len(s.Command) == 0 || s.Command[0] != s.Name {
		t.Fatalf("%s command %q; want it to start with the %s subcommand", s.Name, s.Command, s.Name)
	}
	if !s.ReadOnly {
		t.Errorf("%s is not read_only; it writes nothing locally", s.Name)
	}
	if s.Restart != types.RestartPolicyUnlessStopped {
		t.Errorf("%s restart %q, want %s", s.Name, s.Restart, types.RestartPolicyUnlessStopped)
	}
	for _, key := range []string{"LIKENESS_REDIS_URL", "LIKENESS_S3_ENDPOINT", "LIKENESS_S3_ACCESS_KEY",
		"LIKENESS_S3_SECRET_KEY", "LIKENESS_S3_BUCKET", "LIKENESS_S3_SECURE"} {
		if envOf(s, key) != envOf(w, key) {
			t.Errorf("%s %s = %q, worker has %q", s.Name, key, envOf(s, key), envOf(w, key))
		}
	}
	for _, key := range []string{"REPLICATE_API_TOKEN", "OPENAI_API_KEY", "BFL_API_KEY", "RUNWAYML_API_SECRET", "IDEOGRAM_API_KEY", "ARK_API_KEY"} {
		if _, ok := s.Environment[key]; ok {
			t.Errorf("%s is given %s, which only workers need", s.Name, key)
		}
	}
	checkLikenessDependsOn(t, s)
}

func checkLikenessDependsOn(t *testing.T, s types.ServiceConfig) {
	t.Helper()
	want := map[string]string{
		"redis":      types.ServiceConditionHealthy,
		"minio-init": types.ServiceConditionCompletedSuccessfully,
		"jaeger":     types.ServiceConditionStarted,
	}
	got := map[string]string{}
	for name, d := range s.DependsOn {
		got[name] = d.Condition
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s depends_on conditions (-want +got):\n%s", s.Name, diff)
	}
}

// flagValue returns the value of flag in args, written "--flag value" or
// "--flag=value", or "" if args lack it.
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// listenPort returns the port of a listen address that other containers
// and pods can reach: all interfaces, not loopback.
func listenPort(addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", addr, err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		return 0, fmt.Errorf("%q listens on %s only; other containers cannot reach it", addr, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n <= 0 || n > 65535 {
		return 0, fmt.Errorf("%q: bad port", addr)
	}
	return n, nil
}

// prometheusConfig is the Prometheus configuration the compose stack
// mounts, relative to the repository root.
const prometheusConfig = "deployments/prometheus/prometheus.yml"

// promConfig is the part of prometheus.yml the tests read.
type promConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
		ScrapeTimeout  string `yaml:"scrape_timeout"`
	} `yaml:"global"`
	ScrapeConfigs []struct {
		JobName        string `yaml:"job_name"`
		MetricsPath    string `yaml:"metrics_path"`
		ScrapeInterval string `yaml:"scrape_interval"`
		DNSSDConfigs   []struct {
			Names           []string `yaml:"names"`
			Type            string   `yaml:"type"`
			Port            int      `yaml:"port"`
			RefreshInterval string   `yaml:"refresh_interval"`
		} `yaml:"dns_sd_configs"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// loadPrometheus decodes deployments/prometheus/prometheus.yml strictly (a
// misspelled key fails, as it does in Prometheus; add a key to promConfig
// when the file first uses it) and checks what Prometheus would refuse to
// start with: durations it cannot parse, a scrape timeout longer than the
// interval, duplicate or empty job names.
func loadPrometheus(t *testing.T) promConfig {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(prometheusConfig)))
	if err != nil {
		t.Fatal(err)
	}
	var cfg promConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("%s: %v", prometheusConfig, err)
	}
	duration := func(where, v string) time.Duration {
		if v == "" {
			return 0
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Errorf("%s: %s %q is not a duration", prometheusConfig, where, v)
		}
		return d
	}
	interval := duration("global scrape_interval", cfg.Global.ScrapeInterval)
	if timeout := duration("global scrape_timeout", cfg.Global.ScrapeTimeout); interval > 0 && timeout > interval {
		t.Errorf("%s: scrape_timeout %s is longer than scrape_interval %s", prometheusConfig, cfg.Global.ScrapeTimeout, cfg.Global.ScrapeInterval)
	}
	jobs := map[string]bool{}
	for _, job := range cfg.ScrapeConfigs {
		if job.JobName == "" || jobs[job.JobName] {
			t.Errorf("%s: job name %q is empty or used twice", prometheusConfig, job.JobName)
		}
		jobs[job.JobName] = true
		duration("job "+job.JobName+" scrape_interval", job.ScrapeInterval)
		for _, sd := range job.DNSSDConfigs {
			duration("job "+job.JobName+" refresh_interval", sd.RefreshInterval)
		}
	}
	if len(cfg.ScrapeConfigs) == 0 {
		t.Fatalf("%s has no scrape_configs", prometheusConfig)
	}
	return cfg
}

// checkNamedVolume fails t unless s keeps target on a named volume declared
// at the top level, so `docker compose down` without -v keeps the data.
func checkNamedVolume(t *testing.T, p *types.Project, s types.ServiceConfig, target string) {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target != target {
			continue
		}
		if v.Type != types.VolumeTypeVolume {
			t.Errorf("service %s mounts %s as %s, want a named volume", s.Name, target, v.Type)
		} else if _, ok := p.Volumes[v.Source]; !ok {
			t.Errorf("service %s uses volume %q, which is not declared", s.Name, v.Source)
		}
		return
	}
	t.Errorf("service %s keeps %s in the container; mount a named volume there", s.Name, target)
}

// TestComposeDefaults checks that every ${VAR} in docker-compose.yml has a
// default, so `docker compose up` works with nothing exported and no .env.
func TestComposeDefaults(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	// $$ is an escaped dollar, left for the container's shell.
	ref := regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:?-)?|\$([A-Za-z_][A-Za-z0-9_]*)`)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case string:
			for _, m := range ref.FindAllStringSubmatch(v, -1) {
				switch {
				case m[0] == "$$":
				case m[3] != "":
					t.Errorf("$%s has no default; write ${%s:-value}", m[3], m[3])
				case m[2] == "":
					t.Errorf("${%s} has no default; write ${%s:-value}", m[1], m[1])
				}
			}
		}
	}
	walk(doc)
}

// observabilityDoc walks a user through the compose stack's telemetry,
// relative to this package.
const observabilityDoc = repoRoot + "/docs/observability.md"

// TestComposeUsage checks what the usage comment in docker-compose.yml and
// docs/observability.md tell a user to do: the specs they submit exist under
// ./examples (mounted at /specs), every http://127.0.0.1:PORT they link is
// published by the stack, every UI the stack publishes is linked from the
// comment, and every likeness_* metric in an example query is one
// pkg/telemetry defines.
func TestComposeUsage(t *testing.T) {
	t.Parallel()
	docs := map[string][]byte{}
	for _, path := range []string{composeFile, observabilityDoc} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		docs[filepath.Base(path)] = data
	}
	project := loadCompose(t, nil)
	published := map[string]string{} // host port on loopback -> service
	for name, s := range project.Services {
		for _, port := range s.Ports {
			if port.HostIP == "127.0.0.1" {
				published[port.Published] = name
			}
		}
	}
	metricsSource, err := os.ReadFile(filepath.Join(repoRoot, "pkg", "telemetry", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}

	specRef := regexp.MustCompile(`/specs/([\w./-]+\.ya?ml)`)
	link := regexp.MustCompile(`http://127\.0\.0\.1:(\d+)`)
	metric := regexp.MustCompile(`\blikeness_[a-z_]+`)
	for name, data := range docs {
		refs := specRef.FindAllSubmatch(data, -1)
		if len(refs) == 0 {
			t.Errorf("%s submits no spec from /specs", name)
		}
		for _, m := range refs {
			if _, err := os.Stat(filepath.Join(repoRoot, "examples", filepath.FromSlash(string(m[1])))); err != nil {
				t.Errorf("%s shows /specs/%s, but examples/%s does not exist", name, m[1], m[1])
			}
		}
		for _, m := range link.FindAllSubmatch(data, -1) {
			if _, ok := published[string(m[1])]; !ok {
				t.Errorf("%s links http://127.0.0.1:%s, which no service publishes", name, m[1])
			}
		}
		for _, m := range metric.FindAll(data, -1) {
			base := string(m)
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if !regexp.MustCompile(`\b` + base + `\b`).Match(metricsSource) {
				t.Errorf("%s mentions %s, but pkg/telemetry/metrics.go defines no metric %s", name, m, base)
			}
		}
	}
	for _, svc := range []string{"serve", "jaeger", "prometheus"} {
		for _, port := range project.Services[svc].Ports {
			if !bytes.Contains(docs["docker-compose.yml"], []byte("http://127.0.0.1:"+port.Published)) {
				t.Errorf("the usage comment in docker-compose.yml does not link %s at http://127.0.0.1:%s", svc, port.Published)
			}
		}
	}
}
