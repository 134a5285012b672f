package deployments

import (
	"bytes"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	yaml "go.yaml.in/yaml/v3"
)

// kubeDir holds the Kubernetes manifests (the kustomize base), relative to
// this package.
const kubeDir = "kubernetes/base"

// object is the part of a Kubernetes (or kustomize) document the tests read.
type object struct {
	file string // base name of the file it came from

	APIVersion string            `yaml:"apiVersion"`
	Kind       string            `yaml:"kind"`
	Metadata   objectMeta        `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`       // ConfigMap, Secret
	StringData map[string]string `yaml:"stringData"` // Secret
	Resources  []string          `yaml:"resources"`  // Kustomization
	Spec       deploymentSpec    `yaml:"spec"`       // Deployment
}

type objectMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type deploymentSpec struct {
	Replicas *int `yaml:"replicas"`
	Selector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	} `yaml:"selector"`
	Template struct {
		Metadata objectMeta `yaml:"metadata"`
		Spec     struct {
			TerminationGracePeriodSeconds *int64          `yaml:"terminationGracePeriodSeconds"`
			SecurityContext               securityContext `yaml:"securityContext"`
			Containers                    []container     `yaml:"containers"`
		} `yaml:"spec"`
	} `yaml:"template"`
}

type securityContext struct {
	RunAsNonRoot           *bool `yaml:"runAsNonRoot"`
	ReadOnlyRootFilesystem *bool `yaml:"readOnlyRootFilesystem"`
}

type container struct {
	Name            string          `yaml:"name"`
	Image           string          `yaml:"image"`
	Args            []string        `yaml:"args"`
	Ports           []containerPort `yaml:"ports"`
	ReadinessProbe  *probe          `yaml:"readinessProbe"`
	LivenessProbe   *probe          `yaml:"livenessProbe"`
	Env             []envVar        `yaml:"env"`
	SecurityContext securityContext `yaml:"securityContext"`
	Resources       struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a port's name
	} `yaml:"httpGet"`
	TimeoutSeconds int `yaml:"timeoutSeconds"`
	PeriodSeconds  int `yaml:"periodSeconds"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
		SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
	} `yaml:"valueFrom"`
}

type keyRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

// kubernetes is every document under deployments/kubernetes, with the ones
// the worker depends on picked out.
type kubernetes struct {
	objects       []object
	kustomization object
	deployment    object // likeness-worker
	scheduler     object // likeness-scheduler
	configMap     object
	secret        object
}

// loadKubernetes decodes every YAML document under deployments/kubernetes
// and requires exactly one Kustomization, Deployment, ConfigMap and Secret.
func loadKubernetes(t *testing.T) kubernetes {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(kubeDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kubernetes
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var o object
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if o.Kind == "" && o.APIVersion == "" && o.Metadata.Name == "" {
				continue // an empty document between two ---
			}
			o.file = filepath.Base(file)
			k.objects = append(k.objects, o)
		}
	}
	pick := map[string]*object{
		"Kustomization": &k.kustomization,
		"ConfigMap":     &k.configMap,
		"Secret":        &k.secret,
	}
	for kind, dst := range pick {
		var found []string
		for _, o := range k.objects {
			if o.Kind == kind {
				*dst = o
				found = append(found, o.file)
			}
		}
		if len(found) != 1 {
			t.Fatalf("want exactly one %s under %s, found %d %v", kind, kubeDir, len(found), found)
		}
	}
	var deployments []string
	for _, o := range k.objects {
		if o.Kind != "Deployment" {
			continue
		}
		deployments = append(deployments, o.Metadata.Name)
		switch o.Metadata.Name {
		case "likeness-worker":
			k.deployment = o
		case "likeness-scheduler":
			k.scheduler = o
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(deployments)), []string{"likeness-scheduler", "likeness-worker"}) {
		t.Fatalf("Deployments %v under %s; want likeness-scheduler and likeness-worker", deployments, kubeDir)
	}
	for _, d := range []object{k.deployment, k.scheduler} {
		if len(d.Spec.Template.Spec.Containers) != 1 {
			t.Fatalf("Deployment %s has %d containers, want 1", d.Metadata.Name, len(d.Spec.Template.Spec.Containers))
		}
	}
	return k
}

func TestKubernetes(t *testing.T) {
	t.Parallel()
	k := loadKubernetes(t)
	pod := k.deployment.Spec.Template.Spec
	c := pod.Containers[0]

	t.Run("documents are well formed", func(t *testing.T) {
		t.Parallel()
		for _, o := range k.objects {
			if o.Kind == "Kustomization" {
				continue // kustomize's own file has no metadata.name
			}
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s: document (kind %q, name %q) lacks apiVersion, kind or metadata.name", o.file, o.Kind, o.Metadata.Name)
			}
		}
	})

	t.Run("kustomization lists every manifest", func(t *testing.T) {
		t.Parallel()
		var manifests []string
		for _, o := range k.objects {
			if o.Kind != "Kustomization" && !slices.Contains(manifests, o.file) {
				manifests = append(manifests, o.file)
			}
		}
		slices.Sort(manifests)
		got := slices.Sorted(slices.Values(k.kustomization.Resources))
		if diff := cmp.Diff(manifests, got); diff != "" {
			t.Errorf("%s resources (-manifests in %s +listed):\n%s", k.kustomization.file, kubeDir, diff)
		}
	})

	t.Run("worker args", func(t *testing.T) {
		t.Parallel()
		if len(c.Args) == 0 || c.Args[0] != "worker" {
			t.Fatalf("container args %q; want them to start with the worker subcommand", c.Args)
		}
		// The same worker as docker-compose.yml, so the two do not drift.
		w, err := loadCompose(t, nil).GetService("worker")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string(w.Command), c.Args); diff != "" {
			t.Errorf("kubernetes args differ from the compose worker command (-compose +kubernetes):\n%s", diff)
		}
		if w.StopGracePeriod != nil && pod.TerminationGracePeriodSeconds != nil {
			compose := time.Duration(*w.StopGracePeriod)
			kube := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
			if compose != kube {
				t.Errorf("terminationGracePeriodSeconds is %s, compose stop_grace_period %s", kube, compose)
			}
		}
	})

	t.Run("metrics endpoint", func(t *testing.T) {
		t.Parallel()
		addr := k.configMap.Data["LIKENESS_METRICS_ADDR"]
		port, err := listenPort(addr)
		if err != nil {
			t.Fatalf("ConfigMap LIKENESS_METRICS_ADDR: %v", err)
		}
		if !slices.ContainsFunc(c.Env, func(e envVar) bool {
			return e.Name == "LIKENESS_METRICS_ADDR" && e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil
		}) {
			t.Error("container does not take LIKENESS_METRICS_ADDR from the ConfigMap")
		}
		// The same port as the compose worker, which prometheus.yml scrapes.
		w, err := loadCompose(t, nil).GetService("worker")
		if err != nil {
			t.Fatal(err)
		}
		if v := w.Environment["LIKENESS_METRICS_ADDR"]; v == nil || *v != addr {
			t.Errorf("ConfigMap LIKENESS_METRICS_ADDR %q differs from the compose worker's %v", addr, v)
		}

		var named string
		for _, p := range c.Ports {
			if p.ContainerPort == port {
				named = p.Name
			}
		}
		if named != "metrics" {
			t.Errorf("container ports %+v; want %d named metrics", c.Ports, port)
		}
		ann := k.deployment.Spec.Template.Metadata.Annotations
		if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(port) {
			t.Errorf("pod annotations %v; want prometheus.io/scrape \"true\" and prometheus.io/port \"%d\"", ann, port)
		}
		if p, ok := ann["prometheus.io/path"]; ok && p != "/metrics" {
			t.Errorf("prometheus.io/path %q; likeness serves /metrics", p)
		}

		rp := c.ReadinessProbe
		if rp == nil || rp.HTTPGet == nil {
			t.Fatal("no readinessProbe httpGet on the metrics endpoint")
		}
		if rp.HTTPGet.Path != "/metrics" || (rp.HTTPGet.Port != "metrics" && rp.HTTPGet.Port != strconv.Itoa(port)) {
			t.Errorf("readinessProbe gets %s on port %s; want /metrics on %d (metrics)", rp.HTTPGet.Path, rp.HTTPGet.Port, port)
		}
		// /metrics reads the queue depth from Redis on every request; the
		// default one-second timeout would flap under load.
		if rp.TimeoutSeconds < 2 {
			t.Errorf("readinessProbe timeoutSeconds %d; give the Redis-backed /metrics a few seconds", rp.TimeoutSeconds)
		}
		// A liveness probe would restart a worker in the middle of paid
		// provider calls whenever Redis is slow.
		if c.LivenessProbe != nil {
			t.Error("container has a livenessProbe; a restart interrupts in-flight provider calls")
		}
	})

	t.Run("telemetry settings", func(t *testing.T) {
		t.Parallel()
		data := k.configMap.Data
		// Traces are off until an endpoint is set; metrics are scraped, not
		// pushed, even then.
		if v := data["OTEL_EXPORTER_OTLP_ENDPOINT"]; v != "" {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT %q is not an http(s) URL", v)
			}
		}
		if v, ok := data["OTEL_METRICS_EXPORTER"]; !ok || v != "none" {
			t.Errorf("ConfigMap OTEL_METRICS_EXPORTER %q; want none, Prometheus scrapes /metrics", v)
		}
	})

	t.Run("selector matches pod labels", func(t *testing.T) {
		t.Parallel()
		for _, d := range []object{k.deployment, k.scheduler} {
			sel := d.Spec.Selector.MatchLabels
			if len(sel) == 0 {
				t.Fatalf("Deployment %s has no selector.matchLabels", d.Metadata.Name)
			}
			for key, v := range sel {
				if got := d.Spec.Template.Metadata.Labels[key]; got != v {
					t.Errorf("%s: selector %s=%s, pod template label is %q", d.Metadata.Name, key, v, got)
				}
			}
		}
		if reflect.DeepEqual(k.deployment.Spec.Selector.MatchLabels, k.scheduler.Spec.Selector.MatchLabels) {
			t.Error("the worker and scheduler Deployments select the same pods")
		}
	})

	t.Run("env references resolve", func(t *testing.T) {
		t.Parallel()
		secretKeys := map[string]bool{}
		for key := range k.secret.Data {
			secretKeys[key] = true
		}
		for key := range k.secret.StringData {
			secretKeys[key] = true
		}
		for _, e := range slices.Concat(c.Env, k.scheduler.Spec.Template.Spec.Containers[0].Env) {
			if !envDocumented(e.Name) {
				t.Errorf("container sets %s, which likeness does not read (typo?)", e.Name)
			}
			if e.ValueFrom == nil {
				continue
			}
			var ref *keyRef
			switch {
			case e.ValueFrom.ConfigMapKeyRef != nil:
				ref = e.ValueFrom.ConfigMapKeyRef
				if ref.Name != k.configMap.Metadata.Name {
					t.Errorf("%s: configMapKeyRef names ConfigMap %q, the manifests define %q", e.Name, ref.Name, k.configMap.Metadata.Name)
				}
				if _, ok := k.configMap.Data[ref.Key]; !ok {
					t.Errorf("%s: ConfigMap %s has no key %s", e.Name, ref.Name, ref.Key)
				}
			case e.ValueFrom.SecretKeyRef != nil:
				ref = e.ValueFrom.SecretKeyRef
				if ref.Name != k.secret.Metadata.Name {
					t.Errorf("%s: secretKeyRef names Secret %q, the manifests define %q", e.Name, ref.Name, k.secret.Metadata.Name)
				}
				if !secretKeys[ref.Key] {
					t.Errorf("%s: Secret %s has no key %s", e.Name, ref.Name, ref.Key)
				}
			default:
				continue
			}
			if ref.Key != e.Name {
				t.Errorf("env %s reads key %s; keep key and variable names equal", e.Name, ref.Key)
			}
		}
		for key := range k.configMap.Data {
			if !envDocumented(key) {
				t.Errorf("ConfigMap key %s is not a variable likeness reads", key)
			}
			if !slices.ContainsFunc(c.Env, func(e envVar) bool {
				return e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil && e.ValueFrom.ConfigMapKeyRef.Key == key
			}) {
				t.Errorf("ConfigMap key %s is not passed to the container", key)
			}
		}
		for key := range secretKeys {
			if !envDocumented(key) {
				t.Errorf("Secret key %s is not a variable likeness reads", key)
			}
		}
	})

	t.Run("secret example holds placeholders", func(t *testing.T) {
		t.Parallel()
		if !strings.Contains(k.secret.file, "example") {
			t.Errorf("Secret lives in %s; keep it in a file named as an example", k.secret.file)
		}
		if len(k.secret.Data) > 0 {
			t.Errorf("example Secret uses data:, want readable stringData placeholders")
		}
		for key, v := range k.secret.StringData {
			if !strings.HasPrefix(v, "example-") {
				t.Errorf("example Secret %s = %q; placeholders start with example- so a real key is never committed here", key, v)
			}
		}
	})

	t.Run("hardened pod", func(t *testing.T) {
		t.Parallel()
		for _, d := range []object{k.deployment, k.scheduler} {
			pod := d.Spec.Template.Spec
			c := pod.Containers[0]
			nonRoot := pod.SecurityContext.RunAsNonRoot
			if c.SecurityContext.RunAsNonRoot != nil {
				nonRoot = c.SecurityContext.RunAsNonRoot
			}
			if nonRoot == nil || !*nonRoot {
				t.Errorf("%s: runAsNonRoot is not true", d.Metadata.Name)
			}
			if ro := c.SecurityContext.ReadOnlyRootFilesystem; ro == nil || !*ro {
				t.Errorf("%s: container readOnlyRootFilesystem is not true", d.Metadata.Name)
			}
			for _, r := range []string{"cpu", "memory"} {
				if c.Resources.Requests[r] == "" {
					t.Errorf("%s: container has no %s request", d.Metadata.Name, r)
				}
			}
			if c.Resources.Limits["memory"] == "" {
				t.Errorf("%s: container has no memory limit", d.Metadata.Name)
			}
		}
		if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < 60 {
			t.Errorf("worker terminationGracePeriodSeconds %v; in-flight provider calls need time to finish", pod.TerminationGracePeriodSeconds)
		}
	})

	t.Run("image pinned", func(t *testing.T) {
		t.Parallel()
		for _, d := range []object{k.deployment, k.scheduler} {
			checkPinned(t, "Deployment "+d.Metadata.Name, d.Spec.Template.Spec.Containers[0].Image)
		}
	})

	t.Run("scheduler", func(t *testing.T) {
		t.Parallel()
		sc := k.scheduler.Spec.Template.Spec.Containers[0]
		// The same scheduler as docker-compose.yml, so the two do not drift.
		s, err := loadCompose(t, nil).GetService("scheduler")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string(s.Command), sc.Args); diff != "" {
			t.Errorf("kubernetes args differ from the compose scheduler command (-compose +kubernetes):\n%s", diff)
		}
		if r := k.scheduler.Spec.Replicas; r == nil || *r != 1 {
			t.Errorf("scheduler replicas %v; want 1", r)
		}
		// The workers' queue and bucket, read from the same ConfigMap and
		// Secret keys; no provider key.
		byName := func(env []envVar) map[string]envVar {
			m := map[string]envVar{}
			for _, e := range env {
				m[e.Name] = e
			}
			return m
		}
		we, se := byName(c.Env), byName(sc.Env)
		for _, key := range []string{"LIKENESS_REDIS_URL", "LIKENESS_S3_ENDPOINT", "LIKENESS_S3_BUCKET", "LIKENESS_S3_SECURE",
			"LIKENESS_S3_ACCESS_KEY", "LIKENESS_S3_SECRET_KEY"} {
			if !reflect.DeepEqual(we[key], se[key]) {
				t.Errorf("scheduler %s = %+v, worker has %+v", key, se[key], we[key])
			}
		}
		for _, key := range []string{"REPLICATE_API_TOKEN", "OPENAI_API_KEY", "BFL_API_KEY", "RUNWAYML_API_SECRET", "IDEOGRAM_API_KEY", "ARK_API_KEY"} {
			if _, ok := se[key]; ok {
				t.Errorf("scheduler is given %s, which only workers need", key)
			}
		}
		if se["OTEL_SERVICE_NAME"].Value != "likeness-scheduler" {
			t.Errorf("scheduler OTEL_SERVICE_NAME %+v; want likeness-scheduler, apart from the workers' traces", se["OTEL_SERVICE_NAME"])
		}
	})
}
