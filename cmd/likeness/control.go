package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/likeness-run/likeness/pkg/runstate"
)

func (a *app) pauseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pause RUN",
		Short: "Stop new provider calls for a run until it is resumed",
		Long: `pause holds RUN's remaining tasks: workers put each one back in the queue
for a couple of seconds, without spending an attempt, until the run is
resumed. Calls already in flight finish. Nothing is lost or paid twice.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.control(cmd.Context(), args[0], "paused: no new provider calls until `likeness resume "+args[0]+"`",
				func(ctx context.Context, runs *runstate.Store) error { return runs.Pause(ctx, args[0]) })
		},
	}
}

func (a *app) resumeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "resume RUN",
		Short: "Let a paused run's tasks call their providers again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.control(cmd.Context(), args[0], "resumed",
				func(ctx context.Context, runs *runstate.Store) error { return runs.Resume(ctx, args[0]) })
		},
	}
}

// control applies one run-control change and says what happened.
func (a *app) control(ctx context.Context, run, done string, change func(context.Context, *runstate.Store) error) error {
	in, err := a.connect(ctx, connectOpts{})
	if err != nil {
		return err
	}
	defer in.Close()
	if err := change(ctx, in.runs); errors.Is(err, runstate.ErrNotFound) {
		return inputErr(fmt.Errorf("run %s not found", run))
	} else if err != nil {
		return infraErr(err)
	}
	fmt.Fprintf(a.stdout, "run %s %s\n", run, done)
	return nil
}
