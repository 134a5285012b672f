package deployments

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/redisconn"
	"github.com/likeness-run/likeness/pkg/task"
)

// built is the output of a kustomize build, decoded.
type built struct {
	configMap    object
	worker       object
	scheduler    object
	scaledObject scaledObject
	pdb          pdbObject
}

type scaledObject struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicaCount *int `yaml:"minReplicaCount"`
		MaxReplicaCount *int `yaml:"maxReplicaCount"`
		CooldownPeriod  int  `yaml:"cooldownPeriod"`
		Advanced        struct {
			HPA struct {
				Behavior struct {
					ScaleDown struct {
						StabilizationWindowSeconds int `yaml:"stabilizationWindowSeconds"`
						Policies                   []struct {
							Type          string `yaml:"type"`
							Value         int    `yaml:"value"`
							PeriodSeconds int    `yaml:"periodSeconds"`
						} `yaml:"policies"`
					} `yaml:"scaleDown"`
				} `yaml:"behavior"`
			} `yaml:"horizontalPodAutoscalerConfig"`
		} `yaml:"advanced"`
		Triggers []struct {
			Type     string            `yaml:"type"`
			Name     string            `yaml:"name"`
			Metadata map[string]string `yaml:"metadata"`
		} `yaml:"triggers"`
	} `yaml:"spec"`
}

type pdbObject struct {
	Spec struct {
		MaxUnavailable *int `yaml:"maxUnavailable"`
		MinAvailable   *int `yaml:"minAvailable"`
		Selector       struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
	} `yaml:"spec"`
}

// kustomizeBuild runs kustomize (krusty, as `kubectl apply -k` does) on dir
// and decodes the objects the tests check.
func kustomizeBuild(t *testing.T, dir string) built {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	var b built
	kinds := map[string]int{}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var node yaml.Node
		if err := dec.Decode(&node); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		var o object
		if err := node.Decode(&o); err != nil {
			t.Fatal(err)
		}
		kinds[o.Kind]++
		var dst any
		switch {
		case o.Kind == "ConfigMap":
			b.configMap = o
		case o.Kind == "Deployment" && o.Metadata.Name == "likeness-worker":
			b.worker = o
		case o.Kind == "Deployment" && o.Metadata.Name == "likeness-scheduler":
			b.scheduler = o
		case o.Kind == "ScaledObject":
			dst = &b.scaledObject
		case o.Kind == "PodDisruptionBudget":
			dst = &b.pdb
		}
		if dst != nil {
			if err := node.Decode(dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := map[string]int{"ConfigMap": 1, "Secret": 1, "Deployment": 2, "ScaledObject": 1, "PodDisruptionBudget": 1}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Fatalf("kustomize build %s: kinds (-want +got):\n%s", dir, diff)
	}
	return b
}

// servedQueues are the queues a worker serves: every provider's generation
// queue (a worker serves each provider it has a key for, the simulator
// always) and the control queue.
func servedQueues() []string {
	q := []string{task.QueueControl}
	for _, p := range provider.DefaultRegistry().Providers() {
		q = append(q, task.QueueFor(p))
	}
	slices.Sort(q)
	return q
}

// pendingList is asynq's pending list of a queue, the key KEDA reads.
func pendingList(queue string) string { return "asynq:{" + queue + "}:pending" }

// TestKustomize builds the base and the Sentinel overlay as `kubectl apply
// -k` would and checks the autoscaling against the code: KEDA watches
// exactly the queues the worker serves, on the Redis the workers use, the
// scale-down leaves each worker its drain, the disruption budget covers the
// workers, and every variable set is one likeness reads.
func TestKustomize(t *testing.T) {
	t.Parallel()
	overlays := map[string]string{
		"default":  "kubernetes",
		"sentinel": filepath.Join("kubernetes", "overlays", "sentinel"),
	}
	for name, dir := range overlays {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := kustomizeBuild(t, dir)
			so := b.scaledObject.Spec
			if so.ScaleTargetRef.Kind != "Deployment" || so.ScaleTargetRef.Name != b.worker.Metadata.Name {
				t.Errorf("ScaledObject scales %s %q; want the worker Deployment %q", so.ScaleTargetRef.Kind, so.ScaleTargetRef.Name, b.worker.Metadata.Name)
			}
			if b.worker.Spec.Replicas != nil {
				t.Errorf("worker Deployment sets replicas %d; KEDA owns the count and an apply would reset it", *b.worker.Spec.Replicas)
			}

			ropt, err := redisconn.Parse(b.configMap.Data["LIKENESS_REDIS_URL"])
			if err != nil {
				t.Fatalf("ConfigMap LIKENESS_REDIS_URL: %v", err)
			}
			var lists []string
			for _, tr := range so.Triggers {
				md := tr.Metadata
				lists = append(lists, md["listName"])
				if n, err := strconv.Atoi(md["listLength"]); err != nil || n <= 0 {
					t.Errorf("trigger %s: listLength %q; want a positive target", tr.Name, md["listLength"])
				}
				if md["databaseIndex"] != strconv.Itoa(ropt.DB) {
					t.Errorf("trigger %s reads database %q; the workers use %d", tr.Name, md["databaseIndex"], ropt.DB)
				}
				switch ropt.Mode {
				case redisconn.Single:
					if tr.Type != "redis" || md["address"] != ropt.Addrs[0] {
						t.Errorf("trigger %s: %s at %q; the workers use redis at %s", tr.Name, tr.Type, md["address"], ropt.Addrs[0])
					}
				case redisconn.Sentinel:
					if tr.Type != "redis-sentinel" || md["addresses"] != strings.Join(ropt.Addrs, ",") || md["sentinelMaster"] != ropt.MasterName {
						t.Errorf("trigger %s: %s at %q master %q; the workers use sentinels %v master %q",
							tr.Name, tr.Type, md["addresses"], md["sentinelMaster"], ropt.Addrs, ropt.MasterName)
					}
				default:
					t.Errorf("LIKENESS_REDIS_URL is a %s; no KEDA trigger is checked for it", ropt.Mode)
				}
			}
			var want []string
			for _, q := range servedQueues() {
				want = append(want, pendingList(q))
			}
			slices.Sort(lists)
			if diff := cmp.Diff(want, lists); diff != "" {
				t.Errorf("KEDA watches other lists than the queues the worker serves (-served +watched):\n%s", diff)
			}

			// Retries and scheduled tasks reach the pending lists only
			// through a running worker: never scale to zero.
			if so.MinReplicaCount == nil || *so.MinReplicaCount < 1 {
				t.Errorf("minReplicaCount %v; want at least 1", so.MinReplicaCount)
			}
			if so.MaxReplicaCount == nil || *so.MaxReplicaCount <= *so.MinReplicaCount {
				t.Errorf("maxReplicaCount %v; want more than the minimum", so.MaxReplicaCount)
			}
			// A worker leaving drains for its --shutdown-timeout: the pod's
			// grace period must cover it, and scale-down must not remove the
			// next pod before the last one is gone.
			drain := shutdownTimeout(t, b.worker.Spec.Template.Spec.Containers[0].Args)
			grace := b.worker.Spec.Template.Spec.TerminationGracePeriodSeconds
			if grace == nil || time.Duration(*grace)*time.Second <= drain {
				t.Errorf("terminationGracePeriodSeconds %v does not cover the %s drain", grace, drain)
			}
			down := so.Advanced.HPA.Behavior.ScaleDown
			if time.Duration(down.StabilizationWindowSeconds)*time.Second < drain || time.Duration(so.CooldownPeriod)*time.Second < drain {
				t.Errorf("scale-down stabilization %ds, cooldown %ds; want each at least the %s drain", down.StabilizationWindowSeconds, so.CooldownPeriod, drain)
			}
			if len(down.Policies) == 0 {
				t.Error("no scale-down policy: the HPA may remove every extra worker at once")
			}
			for _, p := range down.Policies {
				if p.Type != "Pods" || p.Value != 1 || time.Duration(p.PeriodSeconds)*time.Second < drain {
					t.Errorf("scale-down policy %+v; want one pod per period of at least the %s drain", p, drain)
				}
			}

			sel := b.pdb.Spec.Selector.MatchLabels
			if diff := cmp.Diff(b.worker.Spec.Selector.MatchLabels, sel); diff != "" {
				t.Errorf("PodDisruptionBudget selects other pods than the worker's (-worker +pdb):\n%s", diff)
			}
			if b.pdb.Spec.MaxUnavailable == nil || *b.pdb.Spec.MaxUnavailable != 1 {
				t.Errorf("PodDisruptionBudget maxUnavailable %v; want 1 (a drain takes workers one at a time, and never blocks)", b.pdb.Spec.MaxUnavailable)
			}

			for _, d := range []object{b.worker, b.scheduler} {
				for _, e := range d.Spec.Template.Spec.Containers[0].Env {
					if !envDocumented(e.Name) {
						t.Errorf("%s sets %s, which likeness does not read", d.Metadata.Name, e.Name)
					}
				}
			}
		})
	}
}

// shutdownTimeout is the worker's --shutdown-timeout.
func shutdownTimeout(t *testing.T, args []string) time.Duration {
	t.Helper()
	i := slices.Index(args, "--shutdown-timeout")
	if i < 0 || i+1 >= len(args) {
		t.Fatalf("worker args %q set no --shutdown-timeout", args)
	}
	d, err := time.ParseDuration(args[i+1])
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestKustomizeAgainstRedis checks the two things the manifests assume
// about the running code, on the real test Redis: a task enqueued on a
// provider's queue lands in the list KEDA reads, and a worker started with
// the manifest's metrics address answers its readiness probe.
func TestKustomizeAgainstRedis(t *testing.T) {
	t.Parallel()
	addr, db := testenv.RedisDB(t)
	ropt := asynq.RedisClientOpt{Addr: addr, DB: db}
	q := asynq.NewClient(ropt)
	defer q.Close()
	queue := task.QueueFor("replicate")
	if _, err := q.Enqueue(asynq.NewTask(task.TypeGenerate, []byte("{}")), asynq.Queue(queue)); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	defer rdb.Close()
	if n, err := rdb.LLen(context.Background(), pendingList(queue)).Result(); err != nil || n != 1 {
		t.Errorf("LLEN %s = %d, %v after one enqueue; KEDA would read the wrong key", pendingList(queue), n, err)
	}

	b := kustomizeBuild(t, "kubernetes")
	c := b.worker.Spec.Template.Spec.Containers[0]
	rp := c.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil {
		t.Fatal("worker has no HTTP readiness probe")
	}
	// The probe port, by name or number, is the metrics address's port.
	port, err := listenPort(b.configMap.Data["LIKENESS_METRICS_ADDR"])
	if err != nil {
		t.Fatal(err)
	}
	if rp.HTTPGet.Port != strconv.Itoa(port) && !slices.ContainsFunc(c.Ports, func(p containerPort) bool {
		return p.Name == rp.HTTPGet.Port && p.ContainerPort == port
	}) {
		t.Errorf("readiness probe port %q is not the metrics port %d", rp.HTTPGet.Port, port)
	}

	bin := filepath.Join(t.TempDir(), "likeness")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/likeness")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metrics := l.Addr().String()
	l.Close()
	w := exec.CommandContext(t.Context(), bin, c.Args...)
	w.Env = []string{"HOME=" + t.TempDir(), fmt.Sprintf("LIKENESS_REDIS_URL=redis://%s/%d", addr, db),
		"LIKENESS_METRICS_ADDR=" + metrics, "LIKENESS_LOG_LEVEL=warn", "OTEL_METRICS_EXPORTER=none"}
	var logs bytes.Buffer
	w.Stdout, w.Stderr = &logs, &logs
	s3 := testenv.S3(t)
	w.Env = append(w.Env, "LIKENESS_S3_ENDPOINT="+s3.Endpoint, "LIKENESS_S3_ACCESS_KEY="+s3.AccessKey,
		"LIKENESS_S3_SECRET_KEY="+s3.SecretKey, fmt.Sprintf("LIKENESS_S3_BUCKET=probe-%d", time.Now().UnixNano()%1e9))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Process.Kill(); _ = w.Wait() }()
	url := "http://" + metrics + rp.HTTPGet.Path
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s (the readiness probe) = %d", url, resp.StatusCode)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker's readiness probe %s never answered: %v\n%s", url, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
