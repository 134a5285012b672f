package deployments

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// repoRoot is the repository root as seen from this package's directory,
// where go test runs the tests.
const repoRoot = ".."

// envDocumented reports whether name is an environment variable the likeness
// binary reads (design.md, "Environment"). A misspelled name in a deployment
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
		"REPLICATE_API_TOKEN",
		"OPENAI_API_KEY",
		"BFL_API_KEY",
		"RUNWAYML_API_SECRET",
		"IDEOGRAM_API_KEY",
		"ARK_API_KEY":
		return true
	}
	return strings.HasPrefix(name, "OTEL_")
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

	// Every way the image is started must name a real subcommand; cobra
	// rejects an unknown one, so `<cmd> --help` exiting 0 proves it exists.
	project := loadCompose(t, nil)
	worker, err := project.GetService("worker")
	if err != nil {
		t.Fatal(err)
	}
	k8s := loadKubernetes(t)
	starts := []struct {
		name string
		args []string
	}{
		{"root", nil},
		{"Dockerfile CMD", df.cmd},
		{"docker-compose.yml worker command", worker.Command},
		{"kubernetes worker args", k8s.deployment.Spec.Template.Spec.Containers[0].Args},
	}
	for _, s := range starts {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"--help"}
			if len(s.args) > 0 {
				args = []string{s.args[0], "--help"}
			}
			if out, err := runLikeness(t, bin, args...); err != nil {
				t.Fatalf("likeness %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}

	// The check above is only worth something if an unknown subcommand fails.
	t.Run("unknown subcommand fails", func(t *testing.T) {
		t.Parallel()
		if out, err := runLikeness(t, bin, "no-such-subcommand", "--help"); err == nil {
			t.Errorf("likeness no-such-subcommand --help exited 0, so `<cmd> --help` proves nothing:\n%s", out)
		}
	})
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

// runLikeness runs bin with args in an empty environment, so nothing on the
// test machine configures it, and returns its combined output.
func runLikeness(t *testing.T, bin string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"HOME=" + t.TempDir()}
	return cmd.CombinedOutput()
}

// TestEnvReadByCode checks the other side of envDocumented: every variable
// the deployment files set (OTEL_* aside, which the OpenTelemetry SDK reads)
// is named somewhere in the Go source of the binary, so renaming a variable
// in code without updating the deployments fails here instead of leaving a
// worker silently unconfigured.
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

	worker, err := loadCompose(t, nil).GetService("worker")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]string{} // name -> where
	for name := range worker.Environment {
		set[name] = "docker-compose.yml worker"
	}
	for _, e := range loadKubernetes(t).deployment.Spec.Template.Spec.Containers[0].Env {
		set[e.Name] = "kubernetes worker"
	}
	for name, where := range set {
		if strings.HasPrefix(name, "OTEL_") {
			continue
		}
		if !inCode[name] {
			t.Errorf("%s sets %s, but no Go source outside tests names it", where, name)
		}
	}
}
