package deployments

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instruction is one logical Dockerfile line: continuations joined, comments
// dropped.
type instruction struct {
	line    int    // where the instruction starts, 1-based
	keyword string // upper case: FROM, RUN, COPY...
	rest    string // everything after the keyword
}

// stage is one FROM section of a multi-stage Dockerfile.
type stage struct {
	image string
	name  string // from "AS name"; empty when unnamed
	body  []instruction
}

// dockerfile is what the tests need from deployments/Dockerfile.
type dockerfile struct {
	stages     []stage
	goBuild    goBuild
	buildStage string   // name of the stage that runs goBuild
	entrypoint []string // final stage, exec form
	cmd        []string // final stage, exec form
	user       string   // final stage's last USER
}

// goBuild is the Dockerfile's `RUN [VAR=value...] go build ...` line.
type goBuild struct {
	env    []string // VAR=value assignments before the command
	args   []string // after "go": build, flags..., package
	output string   // the -o value
	pkg    string   // the package built, as written
}

// argsWithOutput returns the go command's arguments with -o pointed at out.
func (b goBuild) argsWithOutput(out string) []string {
	args := make([]string, 0, len(b.args))
	for i := 0; i < len(b.args); i++ {
		switch a := b.args[i]; {
		case a == "-o" || a == "--o":
			args = append(args, a, out)
			i++
		case strings.HasPrefix(a, "-o=") || strings.HasPrefix(a, "--o="):
			args = append(args, "-o="+out)
		default:
			args = append(args, a)
		}
	}
	return args
}

// parseDockerfile reads deployments/Dockerfile.
func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	path := filepath.Join(repoRoot, "deployments", "Dockerfile")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var df dockerfile
	goBuildRE := regexp.MustCompile(`\bgo\s+build\b`)
	for _, in := range logicalLines(string(data)) {
		if in.keyword == "FROM" {
			fields := strings.Fields(in.rest)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") { // --platform=...
				fields = fields[1:]
			}
			if len(fields) == 0 {
				t.Fatalf("%s:%d: FROM names no image", path, in.line)
			}
			s := stage{image: fields[0]}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				s.name = fields[2]
			}
			df.stages = append(df.stages, s)
			continue
		}
		if len(df.stages) == 0 {
			if in.keyword == "ARG" {
				continue
			}
			t.Fatalf("%s:%d: %s before the first FROM", path, in.line, in.keyword)
		}
		cur := &df.stages[len(df.stages)-1]
		cur.body = append(cur.body, in)
		if in.keyword == "RUN" && goBuildRE.MatchString(in.rest) {
			if df.goBuild.pkg != "" {
				t.Fatalf("%s:%d: a second go build line; the test reproduces exactly one", path, in.line)
			}
			b, err := parseGoBuild(in.rest)
			if err != nil {
				t.Fatalf("%s:%d: %v", path, in.line, err)
			}
			df.goBuild, df.buildStage = b, cur.name
		}
	}
	if len(df.stages) == 0 {
		t.Fatalf("%s: no FROM", path)
	}
	if df.goBuild.pkg == "" {
		t.Fatalf("%s: no RUN ... go build line", path)
	}
	for _, in := range df.stages[len(df.stages)-1].body {
		switch in.keyword {
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(in.rest), &argv); err != nil {
				// Shell form wraps the command in /bin/sh -c, which the
				// distroless base does not have.
				t.Fatalf("%s:%d: %s must use the exec form [\"...\"]: %v", path, in.line, in.keyword, err)
			}
			if in.keyword == "ENTRYPOINT" {
				df.entrypoint = argv
			} else {
				df.cmd = argv
			}
		case "USER":
			df.user = strings.TrimSpace(in.rest)
		}
	}
	return df
}

// logicalLines splits Dockerfile text into instructions.
func logicalLines(text string) []instruction {
	var (
		out   []instruction
		buf   strings.Builder
		start int
	)
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && buf.Len() == 0) {
			continue // comments may sit inside a continuation, too
		}
		if buf.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			buf.WriteString(body)
			buf.WriteByte(' ')
			continue
		}
		buf.WriteString(trimmed)
		keyword, rest, _ := strings.Cut(strings.TrimSpace(buf.String()), " ")
		out = append(out, instruction{line: start, keyword: strings.ToUpper(keyword), rest: strings.TrimSpace(rest)})
		buf.Reset()
	}
	return out
}

// parseGoBuild parses the shell text of a RUN line that must be a single
// `[VAR=value...] go build [flags] package` command, so that the test can run
// exactly the same build.
func parseGoBuild(sh string) (goBuild, error) {
	if strings.ContainsAny(sh, "$`") {
		return goBuild{}, fmt.Errorf("go build line uses shell expansion, which the test cannot reproduce: %s", sh)
	}
	words, err := shellWords(sh)
	if err != nil {
		return goBuild{}, err
	}
	var b goBuild
	i := 0
	for ; i < len(words) && regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`).MatchString(words[i]); i++ {
		b.env = append(b.env, words[i])
	}
	if len(words)-i < 3 || words[i] != "go" || words[i+1] != "build" {
		return goBuild{}, fmt.Errorf("want one [VAR=value...] go build ... package command, got %q", words)
	}
	b.args = words[i+1:]
	for j, w := range b.args {
		switch {
		case w == "&&" || w == "||" || w == ";" || w == "|":
			return goBuild{}, fmt.Errorf("go build line chains shell commands (%q); keep it a single go build", w)
		case (w == "-o" || w == "--o") && j+1 < len(b.args):
			b.output = b.args[j+1]
		case strings.HasPrefix(w, "-o=") || strings.HasPrefix(w, "--o="):
			_, b.output, _ = strings.Cut(w, "=")
		}
	}
	if b.output == "" {
		return goBuild{}, fmt.Errorf("go build line has no -o: %s", sh)
	}
	b.pkg = b.args[len(b.args)-1]
	if strings.HasPrefix(b.pkg, "-") {
		return goBuild{}, fmt.Errorf("go build line must end with the package it builds: %s", sh)
	}
	return b, nil
}

// shellWords splits s into words the way a POSIX shell does for the quoting
// a Dockerfile RUN line uses: single quotes, double quotes, backslashes.
func shellWords(s string) ([]string, error) {
	var (
		words   []string
		cur     strings.Builder
		inWord  bool
		quote   rune
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, fmt.Errorf("unterminated quote or escape in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func TestShellWords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{`CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/x ./cmd/x`,
			[]string{"CGO_ENABLED=0", "go", "build", "-trimpath", "-ldflags=-s -w", "-o", "/out/x", "./cmd/x"}},
		{`go build -ldflags '-s -w'  ./x`, []string{"go", "build", "-ldflags", "-s -w", "./x"}},
		{`a\ b "c\"d" ''`, []string{"a b", `c"d`, ""}},
	}
	for _, tt := range tests {
		got, err := shellWords(tt.in)
		if err != nil {
			t.Errorf("shellWords(%q): %v", tt.in, err)
			continue
		}
		if strings.Join(got, "\x00") != strings.Join(tt.want, "\x00") {
			t.Errorf("shellWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if _, err := shellWords(`"open`); err == nil {
		t.Error(`shellWords("open): no error for an unterminated quote`)
	}
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	df := parseDockerfile(t)
	final := df.stages[len(df.stages)-1]

	t.Run("base images pinned", func(t *testing.T) {
		t.Parallel()
		names := map[string]bool{}
		for _, s := range df.stages {
			if !names[s.image] { // FROM <earlier stage> needs no tag
				checkPinned(t, "Dockerfile FROM", s.image)
			}
			names[s.name] = true
		}
	})

	t.Run("builder Go matches go.mod", func(t *testing.T) {
		t.Parallel()
		var builder string
		for _, s := range df.stages {
			if s.name == df.buildStage {
				builder = s.image
			}
		}
		if !strings.HasPrefix(builder, "golang:") {
			t.Fatalf("go build runs in %q, want an official golang image", builder)
		}
		tag, _ := imageTag(builder)
		imageGo := majorMinor(strings.SplitN(tag, "-", 2)[0])
		modGo := majorMinor(goDirective(t))
		if imageGo != modGo {
			t.Errorf("builder image %s has Go %s but go.mod says go %s", builder, imageGo, modGo)
		}
	})

	t.Run("static build flags", func(t *testing.T) {
		t.Parallel()
		b := df.goBuild
		if !contains(b.env, "CGO_ENABLED=0") {
			t.Errorf("go build env %q lacks CGO_ENABLED=0; the distroless static base has no libc", b.env)
		}
		if !contains(b.args, "-trimpath") {
			t.Errorf("go build args %q lack -trimpath", b.args)
		}
		var ldflags string
		for _, a := range b.args {
			if v, ok := strings.CutPrefix(a, "-ldflags="); ok {
				ldflags = v
			}
		}
		if f := strings.Fields(ldflags); !contains(f, "-s") || !contains(f, "-w") {
			t.Errorf("go build -ldflags=%q, want -s -w", ldflags)
		}
		if b.pkg != "./cmd/likeness" {
			t.Errorf("go build builds %s, want ./cmd/likeness", b.pkg)
		}
	})

	t.Run("built binary is the entrypoint", func(t *testing.T) {
		t.Parallel()
		var dest string
		for _, in := range final.body {
			if in.keyword != "COPY" {
				continue
			}
			f := strings.Fields(in.rest)
			if len(f) == 3 && f[0] == "--from="+df.buildStage && f[1] == df.goBuild.output {
				dest = f[2]
			}
		}
		if dest == "" {
			t.Fatalf("final stage never copies %s from stage %q", df.goBuild.output, df.buildStage)
		}
		if len(df.entrypoint) != 1 || df.entrypoint[0] != dest {
			t.Errorf("ENTRYPOINT %q, want [%q]", df.entrypoint, dest)
		}
		if len(df.cmd) == 0 || df.cmd[0] != "worker" {
			t.Errorf("CMD %q, want the worker role by default", df.cmd)
		}
	})

	t.Run("runs as non-root", func(t *testing.T) {
		t.Parallel()
		user, _, _ := strings.Cut(df.user, ":")
		if user == "" || user == "root" || user == "0" {
			t.Errorf("final stage USER %q; want a non-root user", df.user)
		}
	})

	t.Run("OCI labels", func(t *testing.T) {
		t.Parallel()
		var labels string
		for _, in := range final.body {
			if in.keyword == "LABEL" {
				labels += " " + in.rest
			}
		}
		for _, key := range []string{"org.opencontainers.image.title", "org.opencontainers.image.source"} {
			if !strings.Contains(labels, key+"=") {
				t.Errorf("final stage has no %s label", key)
			}
		}
	})
}

// goDirective returns the go version go.mod declares.
func goDirective(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no go directive")
	return ""
}

// majorMinor trims a Go version such as 1.26.3 to 1.26.
func majorMinor(v string) string {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return v
	}
	return parts[0] + "." + parts[1]
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestDockerignore checks that the build context keeps every Go source file
// (the build breaks without them) and drops version control, local outputs
// and local secrets (which would otherwise land in an image layer).
func TestDockerignore(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ignore, err := parseDockerignore(string(data))
	if err != nil {
		t.Fatal(err)
	}

	for _, p := range []string{".git", ".git/config", "likeness-out", "likeness-out/runs/r1/run.json", "examples/likeness-out", ".env", ".env.local"} {
		if !ignore.excludes(p) {
			t.Errorf(".dockerignore sends %s to the build context", p)
		}
	}

	var kept int
	err = filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(repoRoot, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel == ".git" || rel == "likeness-out" {
				return filepath.SkipDir
			}
			return nil
		}
		if rel != "go.mod" && rel != "go.sum" && !strings.HasSuffix(rel, ".go") {
			return nil
		}
		kept++
		if ignore.excludes(rel) {
			t.Errorf(".dockerignore drops %s, which go build needs", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if kept < 3 {
		t.Fatalf("found only %d Go build inputs under %s; is the walk broken?", kept, repoRoot)
	}
}

func TestDockerignoreMatcher(t *testing.T) {
	t.Parallel()
	ignore, err := parseDockerignore("# c\n.git\n**/*.test\n/bin\nlikeness-out\n!keep.test\ndocs/*.md\n")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want bool
	}{
		{".git/HEAD", true},
		{"a.test", true},
		{"x/y/a.test", true},
		{"keep.test", false},
		{"bin/likeness", true},
		{"cmd/bin/x.go", false},
		{"likeness-out/a", true},
		{"x/likeness-out/a", false},
		{"docs/a.md", true},
		{"docs/sub/a.md", false},
		{"main.go", false},
	}
	for _, tt := range tests {
		if got := ignore.excludes(tt.path); got != tt.want {
			t.Errorf("excludes(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

// dockerignore is a parsed .dockerignore, matched the way Docker matches it:
// patterns are relative to the context root, `**` spans directories, a
// pattern that matches a directory excludes everything below it, and the
// last matching pattern wins (a leading ! re-includes).
type dockerignore []ignorePattern

type ignorePattern struct {
	re     *regexp.Regexp
	negate bool
}

func parseDockerignore(text string) (dockerignore, error) {
	var out dockerignore
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var p ignorePattern
		if rest, ok := strings.CutPrefix(line, "!"); ok {
			p.negate, line = true, strings.TrimSpace(rest)
		}
		line = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(line)), "/")
		re, err := globRegexp(line)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", line, err)
		}
		p.re = re
		out = append(out, p)
	}
	return out, nil
}

// globRegexp translates a .dockerignore glob into an anchored regexp.
func globRegexp(glob string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; c {
		case '*':
			if i+1 < len(glob) && glob[i+1] == '*' {
				i++
				if i+1 < len(glob) && glob[i+1] == '/' {
					i++
					b.WriteString("(.*/)?") // **/ : zero or more directories
				} else {
					b.WriteString(".*")
				}
			} else {
				b.WriteString("[^/]*")
			}
		case '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// excludes reports whether path (slash-separated, relative to the context
// root) stays out of the build context.
func (d dockerignore) excludes(path string) bool {
	excluded := false
	for _, p := range d {
		// A pattern applies to the path itself or to any directory above it.
		matched := false
		for prefix := path; prefix != "."; prefix = filepath.ToSlash(filepath.Dir(prefix)) {
			if p.re.MatchString(prefix) {
				matched = true
				break
			}
		}
		if matched {
			excluded = !p.negate
		}
	}
	return excluded
}
