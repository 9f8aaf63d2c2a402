//go:build !linux

package converter

import (
	"errors"
	"os"
)

func freeBytes(string) (int64, error) { return 0, errors.ErrUnsupported }

// lockFile is not available here: errors.ErrUnsupported (temporary files
// are not locked, and the start-up sweep removes nothing).
func lockFile(*os.File) (bool, error) { return false, errors.ErrUnsupported }

func openNoFollow(path string) (*os.File, error) { return os.Open(path) }

// selfIdentity is not known here: a lease's holder is never recognised as
// dead, its lease is taken over when it expires.
func selfIdentity() (boot, pidns string, pid int, start int64) { return "", "", os.Getpid(), 0 }

func processStart(int) (int64, bool) { return 0, false }
