package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/likeness-run/likeness/internal/testenv"
	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/ratelimit"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/worker"
)

// foldSize is the fold batch of these tests: 8 tasks make 2 parts of 3
// records and leave 2 on the fold list.
const foldSize = 3

// foldFleet is a worker with a small fold size over real Redis and MinIO,
// driven task by task through its handler: generation tasks, then the
// run:fold tasks they queue, then the run:finalize.
type foldFleet struct {
	*overheadFleet
	rdb  *redis.Client
	done map[string]bool // control tasks already run, by queue id
}

func newFoldFleet(t *testing.T) *foldFleet {
	t.Helper()
	s3, _, _ := newS3Pair(t)
	addr, db := testenv.RedisDB(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	t.Cleanup(func() { rdb.Close() })
	f := &foldFleet{overheadFleet: &overheadFleet{t: t, trips: &roundTrips{}, blobs: &countingStore{S3: s3},
		runs: runstate.New(rdb, runstate.Config{FoldSize: foldSize}), gen: &probe{trips: &roundTrips{}},
		opt: asynq.RedisClientOpt{Addr: addr, DB: db}}, rdb: rdb, done: map[string]bool{}}
	w, err := worker.New(worker.Config{
		Redis: f.opt, Store: f.blobs, Runs: f.runs,
		Generators: map[string]provider.Generator{"sim": f.gen},
		Limiter:    ratelimit.New(rdb, ratelimit.Config{}),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.w = w
	f.client = asynq.NewClient(f.opt)
	t.Cleanup(func() { f.client.Close() })
	return f
}

// work runs the generation tasks, each followed by the fold tasks it
// queued (as the control queue would, at once); before task i, at(i) is
// called when set.
func (f *foldFleet) work(tasks []*asynq.Task, at func(i int)) {
	f.t.Helper()
	h := f.w.Handler()
	for i, tk := range tasks {
		if at != nil {
			at(i)
		}
		if err := h.ProcessTask(context.Background(), tk); err != nil {
			f.t.Fatalf("task %d: %v", i, err)
		}
		f.control(task.TypeFold)
	}
}

// control runs the control queue's pending tasks of type typ not run yet,
// and returns how many it ran.
func (f *foldFleet) control(typ string) int {
	f.t.Helper()
	insp := asynq.NewInspector(f.opt)
	defer insp.Close()
	infos, err := insp.ListPendingTasks(task.QueueControl)
	if err != nil && !strings.Contains(err.Error(), "queue not found") {
		f.t.Fatal(err)
	}
	n := 0
	for _, info := range infos {
		if info.Type != typ || f.done[info.ID] {
			continue
		}
		if typ != task.TypeFold { // a fold task is deleted once run: its id comes back
			f.done[info.ID] = true
		}
		if err := f.w.Handler().ProcessTask(context.Background(), asynq.NewTask(info.Type, info.Payload)); err != nil {
			f.t.Fatalf("%s %s: %v", info.Type, info.ID, err)
		}
		if typ == task.TypeFold { // done: asynq keeps no fold task that ran
			if err := insp.DeleteTask(task.QueueControl, info.ID); err != nil {
				f.t.Fatalf("delete %s: %v", info.ID, err)
			}
		}
		n++
	}
	return n
}

// finalized is what a fan-in wrote: manifest.jsonl, and run.json without
// the times the clock sets (finished_at and the wall time).
type finalized struct {
	manifest []byte
	summary  manifest.Summary
	gets     []string // the GETs of records and parts it made
}

// finalize runs the run's run:finalize task and reads what it wrote.
func (f *foldFleet) finalize(run string) finalized {
	f.t.Helper()
	n := f.blobs.len()
	if f.control(task.TypeFinalize) != 1 {
		f.t.Fatal("no run:finalize task was queued")
	}
	return f.written(run, n)
}

// fanInAgain runs the run's fan-in again and reads what it wrote.
func (f *foldFleet) fanInAgain(run string) finalized {
	f.t.Helper()
	n := f.blobs.len()
	if err := f.w.FanIn(context.Background(), run); err != nil {
		f.t.Fatal(err)
	}
	return f.written(run, n)
}

func (f *foldFleet) written(run string, since int) finalized {
	f.t.Helper()
	var out finalized
	for _, r := range f.blobs.since(since) {
		if strings.HasPrefix(r, "GET "+store.RecordsPrefix(run)) || strings.HasPrefix(r, "GET "+store.PartsPrefix(run)) {
			out.gets = append(out.gets, r)
		}
	}
	ctx := context.Background()
	var err error
	if out.manifest, err = f.blobs.S3.Get(ctx, store.ManifestKey(run)); err != nil {
		f.t.Fatal(err)
	}
	raw, err := f.blobs.S3.Get(ctx, store.SummaryKey(run))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &out.summary); err != nil {
		f.t.Fatal(err)
	}
	out.summary.FinishedAt, out.summary.WallS = time.Time{}, 0
	return out
}

// parts lists the run's parts.
func (f *foldFleet) parts(run string) []store.Info {
	f.t.Helper()
	infos, err := f.blobs.S3.List(context.Background(), store.PartsPrefix(run))
	if err != nil {
		f.t.Fatal(err)
	}
	return infos
}

func (f *foldFleet) runOf() string {
	f.t.Helper()
	runs, err := f.runs.List(context.Background(), 1)
	if err != nil || len(runs) != 1 {
		f.t.Fatalf("runs: %v, %v", runs, err)
	}
	return runs[0]
}

func eightTasks(t *testing.T) *spec.Spec {
	return loadSpec(t, specWith("a", "b", "c", "d", "e", "f", "g", "h"))
}

func count(reqs []string, prefix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// TestFoldedRunFinalizesAsUnfolded: the records of a run folded into parts
// as its tasks finish give the fan-in exactly the manifest.jsonl and
// run.json that reading every record does, and the fan-in reads the parts
// and only the records no part holds. The fold list is gone afterwards.
func TestFoldedRunFinalizesAsUnfolded(t *testing.T) {
	t.Parallel()
	f := newFoldFleet(t)
	f.work(f.submit(eightTasks(t)), nil)
	run := f.runOf()
	if parts := f.parts(run); len(parts) != 2 {
		t.Fatalf("%d parts after 8 tasks; want 2 (of %d records)", len(parts), foldSize)
	}
	ctx := context.Background()
	packs, err := f.blobs.S3.List(ctx, store.CellsPrefix(run))
	if err != nil || len(packs) != 2 {
		t.Fatalf("cell packs %v (%v); want one per part", packs, err)
	}
	// The fan-in reads the sheet cells of the records still on the fold
	// list, whose batch was not packed, and no other.
	tail, err := f.runs.FoldLines(ctx, run, foldSize)
	if err != nil {
		t.Fatal(err)
	}
	var unpacked []string
	for _, line := range tail {
		var r manifest.Record
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatal(err)
		}
		unpacked = append(unpacked, strings.TrimSuffix(strings.TrimPrefix(r.OutputKey, store.RunPrefix(run)+"outputs/"), ".png"))
	}
	n := f.blobs.len()
	folded := f.finalize(run)
	var cellReads []string
	for _, req := range f.blobs.since(n) {
		if strings.HasPrefix(req, "GET ") && (strings.Contains(req, "/outputs/") || (strings.Contains(req, "/thumbs/") && !strings.Contains(req, "/thumbs/refs/"))) {
			cellReads = append(cellReads, req)
		}
	}
	for _, req := range cellReads {
		if !strings.Contains(req, unpacked[0]) && !strings.Contains(req, unpacked[1]) {
			t.Errorf("fan-in read %s, a cell of a packed batch (reads %q)", req, cellReads)
		}
	}
	if len(cellReads) == 0 || len(unpacked) != 2 {
		t.Errorf("fan-in read cells %q for the %d records on the fold list; want theirs", cellReads, len(unpacked))
	}
	if got := count(folded.gets, "GET "+store.PartsPrefix(run)); got != 2 {
		t.Errorf("fan-in read %d parts; want 2 (GETs %q)", got, folded.gets)
	}
	if got := count(folded.gets, "GET "+store.RecordsPrefix(run)); got != 2 {
		t.Errorf("fan-in read %d records; want the 2 no part holds (GETs %q)", got, folded.gets)
	}
	if n := bytes.Count(folded.manifest, []byte("\n")); n != 8 || folded.summary.Succeeded != 8 {
		t.Fatalf("manifest of %d lines, run.json counts %d succeeded; want 8 and 8", n, folded.summary.Succeeded)
	}
	if n, err := f.runs.FoldLen(context.Background(), run); err != nil || n != 0 {
		t.Errorf("fold list after finalize: %d lines (%v); want it deleted", n, err)
	}

	// The same fan-in from the records alone.
	for _, p := range f.parts(run) {
		if err := f.blobs.S3.Delete(context.Background(), p.Key); err != nil {
			t.Fatal(err)
		}
	}
	plain := f.fanInAgain(run)
	if got := count(plain.gets, "GET "+store.RecordsPrefix(run)); got != 8 {
		t.Errorf("fan-in without parts read %d records; want 8", got)
	}
	if !bytes.Equal(folded.manifest, plain.manifest) {
		t.Errorf("manifest.jsonl from parts differs from the one from records:\n%s\nvs\n%s", folded.manifest, plain.manifest)
	}
	if !reflect.DeepEqual(folded.summary, plain.summary) {
		t.Errorf("run.json from parts differs from the one from records:\n%+v\nvs\n%+v", folded.summary, plain.summary)
	}
}

// TestFoldRecordRewrittenAfterFold: a record written again after its part
// (a retried task) is read, and its latest version is the manifest's; a
// part written twice (a worker that died between storing a part and
// trimming the fold list) still gives one line per task.
func TestFoldRecordRewrittenAfterFold(t *testing.T) {
	t.Parallel()
	f := newFoldFleet(t)
	s := eightTasks(t)
	f.work(f.submit(s), nil)
	run := f.runOf()
	ctx := context.Background()
	parts := f.parts(run)
	if len(parts) != 2 {
		t.Fatalf("%d parts; want 2", len(parts))
	}
	// The first part again under the next part's number.
	first, err := f.blobs.S3.Get(ctx, parts[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.blobs.S3.Put(ctx, store.PartKey(run, 3), first, "application/x-ndjson"); err != nil {
		t.Fatal(err)
	}
	// A folded task's record, rewritten later.
	line, _, _ := bytes.Cut(first, []byte("\n"))
	var rec manifest.Record
	if err := json.Unmarshal(line, &rec); err != nil {
		t.Fatal(err)
	}
	rec.Status, rec.Error, rec.ErrorClass = manifest.Failed, "retried and failed", "TRANSIENT"
	rec.FinishedAt = rec.FinishedAt.Add(time.Minute)
	raw, _ := json.Marshal(rec)
	if err := f.blobs.S3.Put(ctx, store.RecordKey(run, rec.Task), raw, "application/json"); err != nil {
		t.Fatal(err)
	}

	out := f.finalize(run)
	recs, err := manifest.ReadJSONL(bytes.NewReader(out.manifest))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 8 {
		t.Fatalf("manifest has %d lines; want 8, one per task", len(recs))
	}
	seen := map[string]bool{}
	for _, r := range recs {
		if seen[r.Task] {
			t.Errorf("task %s twice in the manifest", r.Task)
		}
		seen[r.Task] = true
		if r.Task == rec.Task && (r.Status != manifest.Failed || r.Error != "retried and failed") {
			t.Errorf("task %s: %s %q; want the record rewritten after its fold", r.Task, r.Status, r.Error)
		}
	}
	if !strings.Contains(strings.Join(out.gets, " "), store.RecordKey(run, rec.Task)) {
		t.Errorf("the rewritten record was not read: GETs %q", out.gets)
	}
	if out.summary.Failed != 1 || out.summary.Succeeded != 7 {
		t.Errorf("run.json counts %d succeeded, %d failed; want 7 and 1", out.summary.Succeeded, out.summary.Failed)
	}
}

// TestFoldListLost: a fold list Redis lost mid-run (a failover, a restart)
// costs the fan-in reads, not records: the manifest has every task.
func TestFoldListLost(t *testing.T) {
	t.Parallel()
	f := newFoldFleet(t)
	tasks := f.submit(eightTasks(t))
	var run string
	f.work(tasks, func(i int) {
		if i == 5 { // one part written, two records on the list
			run = f.runOf()
			if err := f.runs.DropFold(context.Background(), run); err != nil {
				t.Fatal(err)
			}
		}
	})
	out := f.finalize(run)
	recs, err := manifest.ReadJSONL(bytes.NewReader(out.manifest))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 8 || out.summary.Succeeded != 8 {
		t.Fatalf("manifest has %d lines, run.json %d succeeded; want 8 and 8", len(recs), out.summary.Succeeded)
	}
	// Tasks 1-3 were folded, 4 and 5 lost with the list, 6-8 folded.
	if parts := f.parts(run); len(parts) != 2 {
		t.Errorf("%d parts; want 2", len(parts))
	}
	if got := count(out.gets, "GET "+store.RecordsPrefix(run)); got != 2 {
		t.Errorf("fan-in read %d records; want the 2 lost with the fold list (GETs %q)", got, out.gets)
	}
}
