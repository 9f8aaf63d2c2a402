//go:build linux

package converter

import "syscall"

// sysProcAttr puts ffmpeg and ffprobe in their own process group, so that a
// Ctrl-C in a terminal reaches only the converter (which then lets the
// conversions finish or kills them itself), and has the kernel kill them
// should the converter die without doing so (SIGKILL, OOM kill).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// freeBytes is the space available to this user in dir's file system.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
