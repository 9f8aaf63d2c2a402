//go:build !linux

package converter

import (
	"errors"
	"os"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func freeBytes(string) (int64, error) { return 0, errors.ErrUnsupported }

// lockFile is not available here: errors.ErrUnsupported (temporary files
// are not locked, and the start-up sweep removes nothing).
func lockFile(*os.File) (bool, error) { return false, errors.ErrUnsupported }

func openNoFollow(path string) (*os.File, error) { return os.Open(path) }
