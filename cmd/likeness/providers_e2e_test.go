package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/provider/providertest"
	"github.com/likeness-run/likeness/pkg/provider/sim"
)

// fakeOpenAIKey is a user's OpenAI key for gpt-image-1 on Replicate. It must
// reach the provider and nothing else: no record, manifest, report or log.
const fakeOpenAIKey = "sk-live-DO-NOT-LEAK-4242424242"

// serveSim starts the Replicate-protocol simulator on loopback, fast.
func serveSim(t *testing.T) string {
	t.Helper()
	srv, err := sim.NewServer(sim.ServerConfig{Token: providertest.ReplicateToken, LatencyScale: 0.02, OutputSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	return serveSimWith(t, srv)
}

// serveSimWith serves srv on a loopback port and returns its API base URL.
func serveSimWith(t *testing.T, srv *sim.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler()}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	return "http://" + ln.Addr().String() + "/v1"
}

func modelsSpec(name string, refs []string, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\nname: %s\ncharacters:\n  - {id: mara, reference: refs/mara.png}\n", name)
	b.WriteString("prompts:\n  - {id: piano, text: \"she is playing the piano\"}\nmodels:\n")
	for i, ref := range refs {
		fmt.Fprintf(&b, "  - {id: m%d, model: %q}\n", i, ref)
	}
	b.WriteString(extra)
	return b.String()
}

// assertNoSecret fails if secret appears in any file under dir or in logs.
func assertNoSecret(t *testing.T, secret, dir string, logs ...string) {
	t.Helper()
	for _, l := range logs {
		if strings.Contains(l, secret) {
			t.Errorf("a secret appears in the command's output")
		}
	}
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(data), secret) {
			t.Errorf("a secret was stored in %s", path)
		}
		return nil
	})
}

// TestEveryReplicateModelThroughTheSimulator runs one spec naming every
// Replicate image model, with topic tags, through the real Replicate
// adapter against the simulator speaking Replicate's protocol.
func TestEveryReplicateModelThroughTheSimulator(t *testing.T) {
	t.Parallel()
	base := serveSim(t)
	var refs []string
	for _, m := range provider.DefaultRegistry().Models() {
		if m.Provider == "replicate" && m.Output != provider.OutputText {
			refs = append(refs, m.Ref)
		}
	}
	if len(refs) < 8 {
		t.Fatalf("the registry has %d Replicate image models; want at least 8", len(refs))
	}
	path := writeSpec(t, modelsSpec("replicate-all", refs, "tags: {number_of_tags: 3}\n"))
	out := t.TempDir()
	code, stdout, stderr := likeness(t, []string{
		"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT=",
		"REPLICATE_API_TOKEN=" + providertest.ReplicateToken,
		"LIKENESS_REPLICATE_BASE_URL=" + base,
		"OPENAI_API_KEY=" + fakeOpenAIKey,
		"LIKENESS_LOG_LEVEL=debug",
		"OTEL_TRACES_EXPORTER=console", // spans go to stderr, which is checked for secrets below
	}, "run", path, "--out", out, "--no-progress")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	runs, _ := filepath.Glob(filepath.Join(out, "runs", "*"))
	if len(runs) != 1 {
		t.Fatalf("runs: %v", runs)
	}
	recs := readManifest(t, func(k string) ([]byte, error) { return os.ReadFile(filepath.Join(out, k)) }, filepath.Base(runs[0]))
	if len(recs) != len(refs) {
		t.Fatalf("%d records; want %d", len(recs), len(refs))
	}
	for _, r := range recs {
		if r.Status != manifest.Succeeded || r.ProviderRequestID == "" || len(r.Tags) == 0 {
			t.Errorf("%s: %s request %q tags %v (%s %s)", r.ModelRef, r.Status, r.ProviderRequestID, r.Tags, r.Error, r.TagsError)
		}
	}
	if !strings.Contains(stderr, `"Name":"provider.submit"`) {
		t.Error("no spans on stderr: the secrets check of traces proves nothing")
	}
	assertNoSecret(t, fakeOpenAIKey, out, stdout, stderr)
	assertNoSecret(t, providertest.ReplicateToken, out, stdout, stderr)
}

// TestDirectProvidersThroughTheirFakes runs each direct-API model through
// its adapter against the local server that speaks that provider's protocol.
func TestDirectProvidersThroughTheirFakes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		provider string
		refs     []string
		start    func(t *testing.T) (url, key string)
	}{
		{"openai", []string{"openai:gpt-image-1"}, func(t *testing.T) (string, string) {
			f := providertest.NewOpenAI(t)
			return f.URL(), providertest.OpenAIKey
		}},
		{"bfl", []string{"bfl:flux-kontext-pro", "bfl:flux-kontext-max"}, func(t *testing.T) (string, string) {
			f := providertest.NewBFL(t)
			return f.URL(), providertest.BFLKey
		}},
		{"runway", []string{"runway:gen4_image", "runway:gen4_image_turbo"}, func(t *testing.T) (string, string) {
			f := providertest.NewRunway(t)
			return f.URL(), providertest.RunwayKey
		}},
		{"ideogram", []string{"ideogram:ideogram-3-character"}, func(t *testing.T) (string, string) {
			f := providertest.NewIdeogram(t)
			return f.URL(), providertest.IdeogramKey
		}},
		{"ark", []string{"ark:seededit-3-0-i2i-250628"}, func(t *testing.T) (string, string) {
			f := providertest.NewArk(t)
			return f.URL(), providertest.ArkKey
		}},
	}
	for _, tc := range cases {
		t.Run(tc.provider, func(t *testing.T) {
			t.Parallel()
			url, key := tc.start(t)
			path := writeSpec(t, modelsSpec("direct-"+tc.provider, tc.refs, "variants: 2\n"))
			out := t.TempDir()
			env := []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT=",
				keyEnv(tc.provider) + "=" + key,
				"LIKENESS_" + strings.ToUpper(tc.provider) + "_BASE_URL=" + url}
			code, stdout, stderr := likeness(t, env, "run", path, "--out", out, "--no-progress")
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
			}
			if want := fmt.Sprintf("%d succeeded", 2*len(tc.refs)); !strings.Contains(stdout, want) {
				t.Errorf("stdout does not say %q:\n%s", want, stdout)
			}
			assertNoSecret(t, key, out, stdout, stderr)
		})
	}
}

// TestMissingKeyIsBadInput: a spec naming a provider this process has no
// key for fails before anything is enqueued, naming the variable to set.
func TestMissingKeyIsBadInput(t *testing.T) {
	t.Parallel()
	path := writeSpec(t, modelsSpec("nokey", []string{"bfl:flux-kontext-pro"}, ""))
	out := t.TempDir()
	code, _, stderr := likeness(t, []string{"LIKENESS_REDIS_URL=", "LIKENESS_S3_ENDPOINT=", "BFL_API_KEY="}, "run", path, "--out", out)
	if code != exitInput || !strings.Contains(stderr, "BFL_API_KEY") {
		t.Errorf("exit %d; want %d naming BFL_API_KEY\n%s", code, exitInput, stderr)
	}
}

// TestSecretsNeverReachRedisOrTheBucket runs gpt-image-1 on Replicate (which
// takes the user's OpenAI key as an input) in the distributed mode, then
// reads back every Redis key and every object: neither key is anywhere.
func TestSecretsNeverReachRedisOrTheBucket(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	base := serveSim(t)
	env := append(append([]string(nil), c.env...),
		"REPLICATE_API_TOKEN="+providertest.ReplicateToken,
		"LIKENESS_REPLICATE_BASE_URL="+base,
		"OPENAI_API_KEY="+fakeOpenAIKey,
		"LIKENESS_LOG_LEVEL=debug",
		"OTEL_TRACES_EXPORTER=console") // spans on stderr: checked for secrets too
	path := writeSpec(t, modelsSpec("secrets", []string{"replicate:openai/gpt-image-1", "replicate:black-forest-labs/flux-kontext-pro"}, "variants: 2\n"))
	code, stdout, stderr := likeness(t, env, "submit", path)
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, stderr)
	}
	run := strings.TrimSpace(stdout)
	w := start(t, env, "worker")
	st := c.waitFinalized(t, run, 2*time.Minute)
	if st.Succeeded != 4 {
		t.Fatalf("%d succeeded; want 4\n%s", st.Succeeded, w.errOut())
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	w.wait(t, time.Minute)

	ctx := context.Background()
	secrets := []string{fakeOpenAIKey, providertest.ReplicateToken}
	var keys int
	iter := c.rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		keys++
		k := iter.Val()
		var vals []string
		switch c.rdb.Type(ctx, k).Val() {
		case "string":
			vals = []string{c.rdb.Get(ctx, k).Val()}
		case "hash":
			for f, v := range c.rdb.HGetAll(ctx, k).Val() {
				vals = append(vals, f, v)
			}
		case "list":
			vals = c.rdb.LRange(ctx, k, 0, -1).Val()
		case "set":
			vals = c.rdb.SMembers(ctx, k).Val()
		case "zset":
			vals = c.rdb.ZRange(ctx, k, 0, -1).Val()
		}
		for _, v := range append(vals, k) {
			for _, s := range secrets {
				if strings.Contains(v, s) {
					t.Errorf("Redis key %s holds a secret", k)
				}
			}
		}
	}
	if keys == 0 {
		t.Fatal("scanned no Redis keys: the test would prove nothing")
	}
	objs, err := c.bucket.List(ctx, "")
	if err != nil || len(objs) == 0 {
		t.Fatalf("bucket: %d objects, %v", len(objs), err)
	}
	for _, o := range objs {
		data, err := c.bucket.Get(ctx, o.Key)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if strings.Contains(string(data), s) {
				t.Errorf("object %s holds a secret", o.Key)
			}
		}
	}
	for _, s := range secrets {
		if strings.Contains(w.errOut()+stderr, s) {
			t.Error("a secret appears in the logs")
		}
	}
}
