//go:build !linux

package converter

import (
	"errors"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

func freeBytes(string) (int64, error) { return 0, errors.ErrUnsupported }
