// Command likeness is the one binary of likeness: it parses flags and
// environment into Config structs, builds the concrete clients (Redis, the
// object store, provider adapters), owns signal handling, and hands over to
// the role packages: scheduler (producer), worker (consumer), and the pkg
// libraries. See design.md for the command table and exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
