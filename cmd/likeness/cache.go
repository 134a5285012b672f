package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/likeness-run/likeness/worker"
)

// cacheCmd groups the commands about the output cache: the index in Redis
// that tells a worker, without asking the bucket, whether the output of a
// request was already paid for.
func (a *app) cacheCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "Manage the index of stored outputs that later runs reuse",
	}
	cmd.AddCommand(a.cacheReindexCmd())
	return cmd
}

func (a *app) cacheReindexCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reindex",
		Short: "Rebuild the cache index in Redis from the bucket's task records",
		Long: `reindex reads every succeeded task record in the bucket (a finished run's
manifest.jsonl, else its records one by one) and the entries of the older
cache/ directory, and writes the cache index in Redis from them: a later run
that makes an identical request then reuses the stored output instead of
paying for it again. Workers rebuild a missing index by themselves before
they trust a miss (a new or emptied Redis); run this after restoring a
bucket, or to rebuild ahead of a large run. Entries already indexed stay.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, err := a.connect(cmd.Context(), connectOpts{needStore: true})
			if err != nil {
				return err
			}
			defer in.Close()
			start := time.Now()
			stats, err := worker.RebuildCacheIndex(cmd.Context(), in.blobs, in.runs, worker.StoreName(in.blobs))
			if err != nil {
				return infraErr(fmt.Errorf("rebuild the cache index: %w", err))
			}
			fmt.Fprintf(a.stdout, "cache index rebuilt: %d outputs from %d runs' records, %d older cache entries, in %s\n",
				stats.Records, stats.Runs, stats.Legacy, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
}
