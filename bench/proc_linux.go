package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr puts a subprocess in a process group of its own and has the
// kernel send it SIGTERM if the benchmark dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// cpuTimes reads the machine's CPU time from /proc/stat: the total of
// every state and the part of it stolen by the hypervisor, in clock ticks.
func cpuTimes() (total, steal uint64, ok bool) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	fields := strings.Fields(line)
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0, 0, false
	}
	for i, f := range fields[1:] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		if i >= 8 { // guest and guest_nice are counted in user and nice already
			break
		}
		total += v
		if i == 7 {
			steal = v
		}
	}
	return total, steal, true
}
