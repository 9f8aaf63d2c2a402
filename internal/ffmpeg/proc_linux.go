//go:build linux

package ffmpeg

import "syscall"

// sysProcAttr puts ffmpeg and ffprobe in their own process group, so that a
// Ctrl-C in a terminal reaches only the process running them (which then
// lets them finish or kills them itself), and has the kernel kill them
// should that process die without doing so (SIGKILL, OOM kill).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
