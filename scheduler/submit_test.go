package scheduler_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/scheduler"
)

// slowQueue is the real queue behind a network 1 ms away; it records the
// order tasks were enqueued in and how many were in flight at once.
type slowQueue struct {
	*asynq.Client
	mu       sync.Mutex
	inFlight int
	most     int
	order    []string
}

func (q *slowQueue) EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	g, err := task.DecodeGenerate(t.Payload())
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.inFlight++
	q.most = max(q.most, q.inFlight)
	q.order = append(q.order, g.Prompt+"/"+g.Model)
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		q.inFlight--
		q.mu.Unlock()
	}()
	time.Sleep(time.Millisecond)
	return q.Client.EnqueueContext(ctx, t, opts...)
}

// TestSubmitEnqueuesLargeRunsConcurrently (real Redis): a run of more than
// 256 tasks is enqueued 16 at a time, every task once; a smaller one one
// at a time in the interleaved order.
func TestSubmitEnqueuesLargeRunsConcurrently(t *testing.T) {
	t.Parallel()
	var ref bytes.Buffer
	if err := png.Encode(&ref, image.NewGray(image.Rect(0, 0, 8, 8))); err != nil {
		t.Fatal(err)
	}
	addr, db := testenv.RedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { rdb.Close() })
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: addr, DB: db})
	t.Cleanup(func() { client.Close() })
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: addr, DB: db})
	t.Cleanup(func() { insp.Close() })
	blobs, err := store.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	submit := func(name string, prompts int) (*scheduler.Submission, *slowQueue) {
		t.Helper()
		var b strings.Builder
		fmt.Fprintf(&b, "version: 1\nname: %s\ncharacters: [{id: c, reference: ref.png}]\nprompts:\n", name)
		for i := range prompts {
			fmt.Fprintf(&b, "  - {id: p%03d, text: prompt %d}\n", i, i)
		}
		b.WriteString("models: [{id: a, model: \"sim:kontext\"}, {id: b, model: \"sim:ideogram\"}, {id: c, model: \"sim:seededit\"}]\n")
		s, err := spec.Parse("spec.yaml", []byte(b.String()), fstest.MapFS{"ref.png": {Data: ref.Bytes()}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		q := &slowQueue{Client: client}
		p, err := scheduler.New(scheduler.Config{Queue: q, Store: blobs, Runs: runstate.New(rdb, runstate.Config{})})
		if err != nil {
			t.Fatal(err)
		}
		sub, err := p.Submit(context.Background(), s)
		if err != nil {
			t.Fatalf("Submit %s: %v", name, err)
		}
		return sub, q
	}

	sub, q := submit("large", 100)
	if sub.Tasks != 300 || sub.Enqueued != 300 {
		t.Fatalf("large run: %d tasks, %d enqueued; want 300 and 300", sub.Tasks, sub.Enqueued)
	}
	if q.most < 2 || q.most > 16 {
		t.Errorf("large run: at most %d enqueues in flight; want 2 to 16", q.most)
	}
	qi, err := insp.GetQueueInfo(task.QueueFor("sim"))
	if err != nil || qi.Pending != 300 {
		t.Fatalf("queue holds %+v (%v); want 300 pending tasks", qi, err)
	}
	again, _ := submit("large", 100)
	if !again.Existing || again.Enqueued != 0 {
		t.Errorf("large run submitted again: %+v; want the existing run, nothing enqueued", again)
	}

	sub, q = submit("small", 10)
	if sub.Enqueued != 30 || q.most != 1 {
		t.Errorf("small run: %d enqueued, at most %d in flight; want 30, one at a time", sub.Enqueued, q.most)
	}
	for i, got := range q.order {
		if want := fmt.Sprintf("p%03d/%s", i/3, []string{"a", "b", "c"}[i%3]); got != want {
			t.Fatalf("small run: task %d enqueued is %s; want %s (models interleaved, in order)", i, got, want)
		}
	}
}
