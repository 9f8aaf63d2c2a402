//go:build !linux

package ffmpeg

import "syscall"

// sysProcAttr: no process group of their own, and no kill on this
// process's death, here.
func sysProcAttr() *syscall.SysProcAttr { return nil }
