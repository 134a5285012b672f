package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/runstate"
	"github.com/likeness-run/likeness/pkg/spec"
	"github.com/likeness-run/likeness/pkg/store"
	"github.com/likeness-run/likeness/pkg/task"
	"github.com/likeness-run/likeness/scheduler"
	"github.com/likeness-run/likeness/worker"
)

func (a *app) runCmd() *cobra.Command {
	var (
		out         string
		concurrency int
		noProgress  bool
		serveAddr   string
	)
	cmd := &cobra.Command{
		Use:   "run SPEC",
		Short: "Submit a spec, work it and wait, in one process (the embedded default)",
		Long: `run submits SPEC, works its tasks in this process and waits for the run to
finish, drawing a progress bar. With no LIKENESS_REDIS_URL the queue runs on an
embedded in-process server; with no LIKENESS_S3_ENDPOINT outputs go to --out.
Running the same spec again reuses every stored output.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := loadSpec(args[0])
			if err != nil {
				return err
			}
			gens, err := a.generators()
			if err != nil {
				return inputErr(err)
			}
			if err := servable(s, gens); err != nil {
				return inputErr(err)
			}
			live := !noProgress && isTerminal(a.stderr)
			if live && !cmd.Flags().Changed("log-level") && a.getenv("LIKENESS_LOG_LEVEL") == "" {
				// Info lines would tear the progress bar; warnings still show.
				a.log = newLogger(a.stderr, slog.LevelWarn)
			}
			if serveAddr != "" {
				if err := a.checkServeAddr("--serve", serveAddr); err != nil {
					return err
				}
			}
			in, err := a.connect(ctx, connectOpts{embedded: true, outDir: out, needStore: true})
			if err != nil {
				return err
			}
			defer in.Close()
			var dashAddr net.Addr
			if serveAddr != "" {
				addr, stop, err := a.serveDashboard(ctx, in, serveAddr)
				if err != nil {
					return err
				}
				defer stop()
				dashAddr = addr
			}
			poll := 500 * time.Millisecond
			if !in.distributed {
				poll = 100 * time.Millisecond
			}
			wcfg, err := a.workerConfig(in, concurrency)
			if err != nil {
				return err
			}
			wcfg.PollInterval = poll
			w, err := worker.New(wcfg)
			if err != nil {
				return err
			}
			sub, err := a.submit(ctx, in, s)
			if err != nil {
				return err
			}
			if err := w.Start(); err != nil {
				return infraErr(err)
			}
			defer w.Shutdown()
			if dashAddr != nil {
				fmt.Fprintf(a.stderr, "dashboard: http://%s/runs/%s\n", dashAddr, sub.RunID)
			}
			st, err := a.waitRun(ctx, in.runs, sub.RunID, live)
			if err != nil {
				if ctx.Err() != nil {
					fmt.Fprintf(a.stderr, "\ninterrupted: run %s is incomplete; run the same command again to finish it (stored outputs are reused)\n", sub.RunID)
					return &exitError{code: exitFailures, err: ctx.Err()}
				}
				return err
			}
			if wcfg.Webhook.URL != "" {
				a.waitNotify(ctx, in, task.Notify{RunID: sub.RunID, Finalization: st.Finalized})
			}
			a.printResult(a.stdout, in.blobs, st)
			if st.Succeeded < st.Total {
				return errRunFailed
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", envOr(a.getenv, "LIKENESS_OUT", "likeness-out"), "output directory when no bucket is configured (env LIKENESS_OUT)")
	cmd.Flags().IntVar(&concurrency, "concurrency", 16, "tasks worked at once in this process")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "print periodic progress lines instead of a live bar")
	cmd.Flags().StringVar(&serveAddr, "serve", "", "serve the live dashboard on ADDR while the run works (e.g. 127.0.0.1:8080); beyond loopback only with LIKENESS_DASHBOARD_TOKEN")
	return cmd
}

// waitNotify gives the run's webhook up to a minute to be delivered before
// this process (and, in the embedded mode, its queue) goes away.
func (a *app) waitNotify(ctx context.Context, in *infra, n task.Notify) {
	insp := asynq.NewInspector(in.redisOpt)
	defer insp.Close()
	start := time.Now()
	for {
		info, err := insp.GetTaskInfo(task.QueueControl, n.QueueID())
		switch {
		case err == nil && info.State == asynq.TaskStateCompleted:
			return
		case err == nil && info.State == asynq.TaskStateArchived:
			fmt.Fprintf(a.stderr, "the run's webhook was refused: %s\n", info.LastErr)
			return
		case errors.Is(err, asynq.ErrTaskNotFound) && time.Since(start) > 5*time.Second:
			// The fan-in queues it at once; another worker without
			// LIKENESS_WEBHOOK_URL may have run the fan-in.
			fmt.Fprintln(a.stderr, "no webhook was queued for this run: the worker that finalized it has no LIKENESS_WEBHOOK_URL")
			return
		case time.Since(start) > time.Minute || ctx.Err() != nil:
			if in.distributed {
				fmt.Fprintln(a.stderr, "the run's webhook is not delivered yet; it stays queued for the workers")
			} else {
				fmt.Fprintln(a.stderr, "the run's webhook was not delivered within a minute; it goes with this process's embedded queue")
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// servable checks that this process has an adapter for every provider the
// spec uses, so `run` fails before enqueueing instead of waiting forever.
func servable(s *spec.Spec, gens map[string]provider.Generator) error {
	var missing []string
	for _, m := range s.Models {
		if _, ok := gens[m.Provider]; ok || slices.Contains(missing, m.Provider) {
			continue
		}
		missing = append(missing, m.Provider)
	}
	if s.Tags.NumberOfTags > 0 && gens["replicate"] == nil && !slices.Contains(missing, "replicate") {
		missing = append(missing, "replicate")
	}
	if len(missing) == 0 {
		return nil
	}
	var msg string
	for _, p := range missing {
		msg += fmt.Sprintf("\nprovider %q has no credentials in this process: set %s", p, keyEnv(p))
	}
	return fmt.Errorf("%s: cannot run every model:%s", s.File, msg)
}

// keyEnv names the environment variable holding a provider's key.
func keyEnv(provider string) string {
	switch provider {
	case "replicate":
		return "REPLICATE_API_TOKEN"
	case "openai":
		return "OPENAI_API_KEY"
	case "bfl":
		return "BFL_API_KEY"
	case "runway":
		return "RUNWAYML_API_SECRET"
	case "ideogram":
		return "IDEOGRAM_API_KEY"
	case "ark":
		return "ARK_API_KEY"
	}
	return "the provider's API key"
}

// submit enqueues a spec's run and tells the user what happened.
func (a *app) submit(ctx context.Context, in *infra, s *spec.Spec) (*scheduler.Submission, error) {
	q := asynq.NewClient(in.redisOpt)
	defer q.Close()
	insp := asynq.NewInspector(in.redisOpt)
	defer insp.Close()
	p, err := scheduler.New(scheduler.Config{Queue: q, Tasks: insp, Store: in.blobs, Runs: in.runs, Telemetry: a.tel, Logger: a.log})
	if err != nil {
		return nil, err
	}
	sub, err := p.Submit(ctx, s)
	if errors.Is(err, scheduler.ErrReference) {
		return nil, inputErr(fmt.Errorf("%s: %w", s.File, err))
	}
	if err != nil {
		return nil, infraErr(err)
	}
	switch {
	case sub.Existing && sub.Enqueued > 0:
		fmt.Fprintf(a.stderr, "run %s was submitted before: its succeeded outputs are kept, %d failed or skipped tasks enqueued again\n", sub.RunID, sub.Enqueued)
	case sub.Existing:
		fmt.Fprintf(a.stderr, "run %s was submitted before and has no failed or skipped tasks; nothing new enqueued\n", sub.RunID)
	}
	return sub, nil
}

// waitRun polls the run until it is complete and finalized.
func (a *app) waitRun(ctx context.Context, runs *runstate.Store, run string, live bool) (*runstate.Status, error) {
	bar := newProgress(a.stderr, live && isTerminal(a.stderr))
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := runs.Get(ctx, run)
		if err != nil {
			if errors.Is(err, runstate.ErrNotFound) {
				return nil, inputErr(fmt.Errorf("run %s not found", run))
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, infraErr(err)
		}
		bar.update(st, time.Now())
		if st.Complete() && st.Finalized > 0 {
			bar.finish(st, time.Now())
			return st, nil
		}
		select {
		case <-ctx.Done():
			bar.finish(st, time.Now())
			return st, ctx.Err()
		case <-t.C:
		}
	}
}

// printResult tells the user where everything is.
func (a *app) printResult(w io.Writer, blobs blobStore, st *runstate.Status) {
	wall := st.FinishedAt.Sub(st.CreatedAt).Round(100 * time.Millisecond)
	fmt.Fprintf(w, "run %s finished in %s: %d succeeded, %d failed, %d skipped (%d reused), cost $%.2f\n",
		st.ID, wall, st.Succeeded, st.Failed, st.SkippedBudget+st.SkippedCanceled, st.Cached, st.CostUSD)
	outputs := blobs.Location(store.RunPrefix(st.ID) + "outputs")
	fmt.Fprintf(w, "  images    %s\n", outputs)
	fmt.Fprintf(w, "  manifest  %s\n", blobs.Location(store.ManifestKey(st.ID)))
	fmt.Fprintf(w, "  summary   %s\n", blobs.Location(store.SummaryKey(st.ID)))
	fmt.Fprintf(w, "  report    %s\n", blobs.Location(store.ReportKey(st.ID)))
	fmt.Fprintf(w, "  sheets    %s\n", blobs.Location(store.RunPrefix(st.ID)+"sheets"))
}
