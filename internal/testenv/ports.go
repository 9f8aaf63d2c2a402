package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Ports handed to tests come from below the kernel's ephemeral range and
// below Kubernetes' NodePort range. A port picked from the ephemeral range
// by listening on :0 and closing can be taken a moment later by any
// outgoing connection on the machine (the real node opens many) and the
// binary that was meant to listen on it fails with "address already in
// use"; nothing else ever assigns a port from this range on its own.
const (
	portLow  = 20000
	portHigh = 30000 // NodePorts start here (30000–32767)
)

// FreePort returns a TCP port that nothing listens on, claimed for this
// test: no other test, in this process or another test binary running at
// the same time, is given it until the test ends.
func FreePort(t testing.TB) int {
	t.Helper()
	high := portHigh
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			if lo, err := strconv.Atoi(f[0]); err == nil && lo > portLow && lo < high {
				high = lo
			}
		}
	}
	dir := filepath.Join(os.TempDir(), "mp3converter-test-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatalf("pick a free port: %v", err)
	}
	for range 1000 {
		port := portLow + rand.IntN(high-portLow)
		release, ok := claimPort(dir, port)
		if !ok {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			release()
			continue
		}
		ln.Close()
		t.Cleanup(release)
		return port
	}
	t.Fatalf("pick a free port: none free in %d–%d", portLow, high-1)
	return 0
}

// claimPort takes an exclusive lock on dir/<port>. The lock is the
// kernel's: it goes away with the process that held it, so a test binary
// that dies leaves no port claimed.
func claimPort(dir string, port int) (release func(), ok bool) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}
