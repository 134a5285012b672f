package bench

import "syscall"

// sysProcAttr puts a subprocess in a process group of its own and has the
// kernel send it SIGTERM if the benchmark dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
