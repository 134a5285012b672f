package deployments

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// repoRoot is the repository root as seen from this package's directory,
// where go test runs the tests.
const repoRoot = ".."

// envDocumented reports whether name is an environment variable the likeness
// binary reads (design.md, "Environment"), or a standard OpenTelemetry
// variable the SDK linked into it reads. A misspelled name in a deployment
// file is silently ignored by the binary, so the tests accept nothing else.
// Add LIKENESS_<PROVIDER>_BASE_URL here when a deployment first sets one.
func envDocumented(name string) bool {
	switch name {
	case "LIKENESS_REDIS_URL",
		"LIKENESS_S3_ENDPOINT",
		"LIKENESS_S3_ACCESS_KEY",
		"LIKENESS_S3_SECRET_KEY",
		"LIKENESS_S3_BUCKET",
		"LIKENESS_S3_SECURE",
		"LIKENESS_METRICS_ADDR",
		"LIKENESS_CRON",
		"LIKENESS_WEBHOOK_URL",
		"LIKENESS_WEBHOOK_SECRET",
		"LIKENESS_DASHBOARD_TOKEN",
		"REPLICATE_API_TOKEN",
		"OPENAI_API_KEY",
		"BFL_API_KEY",
		"RUNWAYML_API_SECRET",
		"IDEOGRAM_API_KEY",
		"ARK_API_KEY":
		return true
	}
	return otelEnvLikeness(name) || otelEnvSDK()[name]
}

// otelEnvLikeness reports whether name is an OTEL_* variable pkg/telemetry
// reads itself (its Setup interprets them through Config.Getenv), so that
// TestEnvReadByCode finds it named in the Go source.
func otelEnvLikeness(name string) bool {
	switch name {
	case "OTEL_SDK_DISABLED",
		"OTEL_SERVICE_NAME",
		"OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_TRACES_EXPORTER",
		"OTEL_METRICS_EXPORTER",
		"OTEL_TRACES_SAMPLER",
		"OTEL_TRACES_SAMPLER_ARG",
		"OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT":
		return true
	}
	return false
}

// otelEnvSDK returns the standard OTEL_* variables that the OpenTelemetry
// Go SDK and the exporters autoexport builds (OTLP over HTTP or gRPC,
// Prometheus) read from the process environment, as of the versions in
// go.mod; likeness's own source does not name them.
func otelEnvSDK() map[string]bool {
	m := map[string]bool{}
	for _, signal := range []string{"", "TRACES_", "METRICS_"} {
		for _, setting := range []string{"ENDPOINT", "PROTOCOL", "HEADERS", "TIMEOUT", "COMPRESSION",
			"CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY", "INSECURE"} {
			m["OTEL_EXPORTER_OTLP_"+signal+setting] = true
		}
	}
	for _, name := range []string{
		"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
		"OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
		"OTEL_EXPORTER_PROMETHEUS_HOST", "OTEL_EXPORTER_PROMETHEUS_PORT",
		"OTEL_BSP_SCHEDULE_DELAY", "OTEL_BSP_EXPORT_TIMEOUT", "OTEL_BSP_MAX_QUEUE_SIZE", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
		"OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT", "OTEL_METRICS_EXEMPLAR_FILTER",
		"OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
		"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
		"OTEL_SPAN_EVENT_COUNT_LIMIT", "OTEL_SPAN_LINK_COUNT_LIMIT",
		"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
	} {
		m[name] = true
	}
	return m
}

// imageTag splits an image reference into its tag and digest; both are empty
// for an unpinned reference such as "redis".
func imageTag(ref string) (tag, digest string) {
	if name, d, ok := strings.Cut(ref, "@"); ok {
		ref, digest = name, d
	}
	last := ref[strings.LastIndex(ref, "/")+1:] // a registry host:port comes before a slash
	if _, t, ok := strings.Cut(last, ":"); ok {
		tag = t
	}
	return tag, digest
}

// checkPinned fails t unless ref names a fixed tag or a digest, so a rebuild
// next month runs the same software.
func checkPinned(t *testing.T, where, ref string) {
	t.Helper()
	tag, digest := imageTag(ref)
	switch {
	case digest != "":
	case tag == "":
		t.Errorf("%s: image %q has no tag; pin one", where, ref)
	case tag == "latest":
		t.Errorf("%s: image %q uses :latest; pin a release", where, ref)
	}
}

// TestBinary builds ./cmd/likeness with the Dockerfile's own go build line
// and checks what the image relies on: a static binary (the distroless base
// has no libc), built with the same flags, whose container commands are real
// subcommands.
func TestBinary(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("-short: skipping the Dockerfile-style build of ./cmd/likeness (about two minutes with a cold build cache)")
	}
	df := parseDockerfile(t)
	bin := buildLikeness(t, df.goBuild)

	t.Run("statically linked", func(t *testing.T) {
		t.Parallel()
		if runtime.GOOS != "linux" {
			t.Skipf("the image is linux; this host builds %s binaries", runtime.GOOS)
		}
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("binary has a PT_INTERP header: it needs a dynamic loader the distroless static base lacks")
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			t.Fatal(err)
		}
		if len(libs) > 0 {
			t.Errorf("binary needs shared libraries %v", libs)
		}
		if f.Section(".symtab") != nil {
			t.Error("binary has a symbol table; -ldflags=-s was not applied")
		}
	})

	t.Run("trimpath", func(t *testing.T) {
		t.Parallel()
		data, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		abs, err := filepath.Abs(repoRoot)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(abs)) {
			t.Errorf("binary contains the build directory %s; -trimpath was not applied", abs)
		}
	})

	// Every way the image is started must name a real subcommand with flags
	// it accepts: cobra parses the flags before it prints help, and rejects
	// an unknown subcommand or flag (or a bad value), so `<args> --help`
	// exiting 0 proves the command line would start.
	project := loadCompose(t, nil)
	k8s := loadKubernetes(t)
	starts := []struct {
		name string
		args []string
	}{
		{"root", nil},
		{"Dockerfile CMD", df.cmd},
		{"kubernetes worker args", k8s.deployment.Spec.Template.Spec.Containers[0].Args},
	}
	for _, s := range likenessServices(t, project) {
		starts = append(starts, struct {
			name string
			args []string
		}{"docker-compose.yml " + s.Name + " command", s.Command})
	}
	for _, s := range starts {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			args := append(slices.Clone(s.args), "--help")
			if out, err := runLikeness(t, bin, nil, args...); err != nil {
				t.Fatalf("likeness %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}

	// The OTEL_* settings each deployment gives the binary must pass its
	// telemetry setup, which rejects unknown exporters, samplers and OTLP
	// protocols and exits 2. `models` needs neither Redis nor the bucket and
	// records nothing, so with metrics push off (they are scraped) nothing
	// connects anywhere and nothing is logged.
	envs := map[string]map[string]string{"kubernetes ConfigMap": k8s.configMap.Data}
	for _, s := range likenessServices(t, project) {
		env := map[string]string{}
		for k, v := range s.Environment {
			if v != nil {
				env[k] = *v
			}
		}
		envs["docker-compose.yml "+s.Name] = env
	}
	for where, all := range envs {
		t.Run(where+" telemetry environment", func(t *testing.T) {
			t.Parallel()
			var env []string
			for k, v := range all {
				if strings.HasPrefix(k, "OTEL_") {
					env = append(env, k+"="+v)
				}
			}
			if len(env) == 0 {
				t.Fatalf("%s sets no OTEL_* variable", where)
			}
			slices.Sort(env)
			out, err := runLikeness(t, bin, env, "models")
			if err != nil {
				t.Fatalf("likeness models with %s: %v\n%s", env, err, out)
			}
			if bytes.Contains(out, []byte("telemetry")) || bytes.Contains(out, []byte(`"level":"WARN"`)) {
				t.Errorf("likeness models with %s warns:\n%s", env, out)
			}
		})
	}

	// The checks above are only worth something if an unknown subcommand,
	// flag or flag value, or a bad OTEL_* value, fails.
	for _, bad := range []struct {
		env  []string
		args []string
	}{
		{nil, []string{"no-such-subcommand", "--help"}},
		{nil, []string{"worker", "--no-such-flag", "--help"}},
		{nil, []string{"worker", "--shutdown-timeout", "100", "--help"}},
		{[]string{"OTEL_TRACES_EXPORTER=jaeger"}, []string{"models"}},
		{[]string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http"}, []string{"models"}},
	} {
		t.Run("fails: "+strings.Join(append(slices.Clone(bad.env), bad.args...), " "), func(t *testing.T) {
			t.Parallel()
			if out, err := runLikeness(t, bin, bad.env, bad.args...); err == nil {
				t.Errorf("%s likeness %s exited 0, so the checks above prove nothing:\n%s",
					strings.Join(bad.env, " "), strings.Join(bad.args, " "), out)
			}
		})
	}
}

// likenessServices returns the compose services that run the likeness
// image (the worker, which builds it, and every service sharing its image),
// sorted by name.
func likenessServices(t *testing.T, p *types.Project) []types.ServiceConfig {
	t.Helper()
	worker, err := p.GetService("worker")
	if err != nil {
		t.Fatal(err)
	}
	var out []types.ServiceConfig
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		if s := p.Services[name]; s.Image == worker.Image {
			out = append(out, s)
		}
	}
	return out
}

// buildLikeness runs the Dockerfile's go build line from the repository
// root, writing the binary into a temporary directory, and returns its path.
// It skips t while the package that line builds does not exist yet.
func buildLikeness(t *testing.T, b goBuild) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(b.pkg))); errors.Is(err, fs.ErrNotExist) {
		t.Skipf("%s does not exist yet: nothing to build", b.pkg)
	}
	bin := filepath.Join(t.TempDir(), "likeness")
	cmd := exec.CommandContext(t.Context(), "go", b.argsWithOutput(bin)...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), b.env...) // later entries win
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s (in %s): %v\n%s", strings.Join(cmd.Args, " "), repoRoot, err, out)
	}
	t.Logf("built %s with the Dockerfile's go build line in %s", b.pkg, time.Since(start).Round(time.Millisecond))
	return bin
}

// runLikeness runs bin with args in an environment of env alone, so nothing
// on the test machine configures it, and returns its combined output.
func runLikeness(t *testing.T, bin string, env []string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"HOME=" + t.TempDir()}, env...)
	return cmd.CombinedOutput()
}

// TestEnvReadByCode checks the other side of envDocumented: every variable
// the deployment files set is named somewhere in the Go source of the
// binary (OTEL_* variables that only the OpenTelemetry SDK reads aside), so
// renaming a variable in code without updating the deployments fails here
// instead of leaving a worker silently unconfigured.
func TestEnvReadByCode(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(filepath.Join(repoRoot, "cmd", "likeness")); errors.Is(err, fs.ErrNotExist) {
		t.Skip("cmd/likeness does not exist yet: no code reads the environment")
	}
	inCode := map[string]bool{}
	literal := regexp.MustCompile(`"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)"`)
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "deployments", "testdata", "likeness-out":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range literal.FindAllSubmatch(data, -1) {
			inCode[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	set := map[string]string{} // name -> where
	for _, s := range likenessServices(t, loadCompose(t, nil)) {
		for name := range s.Environment {
			set[name] = "docker-compose.yml " + s.Name
		}
	}
	k8s := loadKubernetes(t)
	for name := range k8s.configMap.Data {
		set[name] = "kubernetes ConfigMap"
	}
	for _, e := range k8s.deployment.Spec.Template.Spec.Containers[0].Env {
		set[e.Name] = "kubernetes worker"
	}
	for name, where := range set {
		if strings.HasPrefix(name, "OTEL_") && !otelEnvLikeness(name) {
			if !otelEnvSDK()[name] {
				t.Errorf("%s sets %s, which is not a standard OpenTelemetry variable the SDK reads", where, name)
			}
			continue
		}
		if !inCode[name] {
			t.Errorf("%s sets %s, but no Go source outside tests names it", where, name)
		}
	}
}
