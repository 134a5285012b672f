//go:build !linux

package bench

import "syscall"

// sysProcAttr is the platform default elsewhere: the benchmark stops its
// subprocesses itself on exit, but cannot ask the kernel to if it dies.
func sysProcAttr() *syscall.SysProcAttr { return nil }
