//go:build !linux

package bench

import "syscall"

// sysProcAttr is the platform default elsewhere: the benchmark stops its
// subprocesses itself on exit, but cannot ask the kernel to if it dies.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// cpuTimes is not known here.
func cpuTimes() (total, steal uint64, ok bool) { return 0, 0, false }
