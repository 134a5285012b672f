package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/likeness-run/likeness/scheduler"
)

func (a *app) schedulerCmd() *cobra.Command {
	var (
		cronFile   string
		sweepEvery time.Duration
		grace      time.Duration
		once       bool
	)
	cmd := &cobra.Command{
		Use:   "scheduler",
		Short: "Submit specs on cron schedules and sweep stuck runs",
		Long: `scheduler keeps the fleet's runs moving. Every --sweep-every it looks at the
newest runs: a run whose every task is done but which has no finalize queued
(its completing worker died, or the fan-in ran out of retries) gets its
finalize again; a run whose submit stopped half-way is reported, to be
resumed by submitting its spec again. With --cron FILE it also submits specs
on schedules:

  entries:
    - name: nightly-sheet
      schedule: "0 2 * * *"      # or @daily, "@every 6h", "CRON_TZ=Europe/Berlin 0 2 * * *"
      spec: specs/sheet.yaml     # relative to FILE; read anew at every tick

A spec unchanged since its last tick is the same run and costs nothing again.
Any number of schedulers may run: duplicates are refused by task ids. With
--once it sweeps once, prints what it did as JSON and exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if sweepEvery <= 0 || grace <= 0 {
				return inputErr(errors.New("--sweep-every and --grace must be above 0"))
			}
			var entries []scheduler.CronEntry
			if cronFile != "" && !once {
				data, err := os.ReadFile(cronFile)
				if err != nil {
					return inputErr(fmt.Errorf("--cron: %w", err))
				}
				if entries, err = scheduler.ParseCronFile(cronFile, data); err != nil {
					return inputErr(err)
				}
				// A typo found now, not at 2 a.m.
				for _, e := range entries {
					if _, err := loadSpec(e.Spec); err != nil {
						return inputErr(fmt.Errorf("%s:%d: entries (%s): %w", cronFile, e.Line, e.Name, err))
					}
				}
			}
			in, err := a.connect(ctx, connectOpts{needStore: len(entries) > 0})
			if err != nil {
				return err
			}
			defer in.Close()
			q := asynq.NewClient(in.redisOpt)
			defer q.Close()
			insp := asynq.NewInspector(in.redisOpt)
			defer insp.Close()
			sw := &scheduler.Sweeper{Runs: in.runs, Queue: q, Inspector: insp, Grace: grace, Logger: a.log, Lock: in.rdb, ID: "scheduler"}
			if once {
				rep, err := sw.Sweep(ctx)
				if err != nil {
					return infraErr(err)
				}
				return json.NewEncoder(a.stdout).Encode(rep)
			}
			if len(entries) > 0 {
				c, err := scheduler.NewCron(entries, func(ctx context.Context, path string) (*scheduler.Submission, error) {
					s, err := loadSpec(path)
					if err != nil {
						return nil, err
					}
					return a.submit(ctx, in, s)
				}, a.log)
				if err != nil {
					return inputErr(err)
				}
				done := make(chan struct{})
				go func() { _ = c.Run(ctx); close(done) }()
				defer func() { <-done }() // let a submit in flight finish
			}
			a.log.Info("scheduler started", "cron_entries", len(entries), "sweep_every", sweepEvery)
			sw.Loop(ctx, sweepEvery)
			a.log.Info("scheduler stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cronFile, "cron", envOr(a.getenv, "LIKENESS_CRON", ""), "cron file of specs to submit on schedules (env LIKENESS_CRON)")
	f.DurationVar(&sweepEvery, "sweep-every", time.Minute, "how often to look for stuck runs")
	f.DurationVar(&grace, "grace", 10*time.Minute, "how long a submit may take before its run counts as stopped half-way")
	f.BoolVar(&once, "once", false, "sweep once, print the report as JSON and exit")
	return cmd
}
