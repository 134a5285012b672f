package deployments

import (
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
	env := func(s types.ServiceConfig, key string) string {
		if v := s.Environment[key]; v != nil {
			return *v
		}
		return ""
	}

	t.Run("services", func(t *testing.T) {
		// Only roles that exist in code; later issues add serve, scheduler
		// and the telemetry backends.
		want := []string{"minio", "minio-init", "redis", "worker"}
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
		for key := range w.Environment {
			if !envDocumented(key) {
				t.Errorf("worker sets %s, which likeness does not read (typo?)", key)
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
		want := map[string]string{
			"redis":      types.ServiceConditionHealthy,
			"minio-init": types.ServiceConditionCompletedSuccessfully,
		}
		got := map[string]string{}
		for name, d := range w.DependsOn {
			got[name] = d.Condition
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("worker depends_on conditions (-want +got):\n%s", diff)
		}
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

// TestComposeUsage checks that the specs the usage comment in
// docker-compose.yml submits exist under ./examples, which the worker
// mounts at /specs.
func TestComposeUsage(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	refs := regexp.MustCompile(`/specs/([\w./-]+\.ya?ml)`).FindAllSubmatch(data, -1)
	if len(refs) == 0 {
		t.Fatal("the usage comment submits no spec from /specs")
	}
	for _, m := range refs {
		if _, err := os.Stat(filepath.Join(repoRoot, "examples", filepath.FromSlash(string(m[1])))); err != nil {
			t.Errorf("docker-compose.yml shows /specs/%s, but examples/%s does not exist", m[1], m[1])
		}
	}
}
