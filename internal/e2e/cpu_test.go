package e2e

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cpuTicks is every process's CPU time in clock ticks (USER_HZ, 100 on
// Linux): its own (utime+stime) and its waited-for children's (cutime+
// cstime: a converter's ffmpeg runs, a postmaster's exited backends), by
// PID, with its command name.
type cpuTicks map[int]struct {
	comm        string
	self, child int64
}

func readCPU() cpuTicks {
	out := cpuTicks{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		b, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:]) // f[0] is the state: utime is f[11]
		if len(f) < 15 {
			continue
		}
		n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
		out[pid] = struct {
			comm        string
			self, child int64
		}{s[open+1 : close], n(11) + n(12), n(13) + n(14)}
	}
	return out
}

// cpuSince is the CPU seconds each command (the suite's four binaries by
// name; ffmpeg as the converter's waited-for children) used between
// before and now, largest first, and their sum. A process that exited
// in between counts only where its parent waited for it.
func cpuSince(before cpuTicks, names map[int]string) (string, float64) {
	const hz = 100
	now := readCPU()
	by := map[string]int64{}
	for pid, p := range now {
		b := before[pid]
		if b.comm != p.comm { // a new process (or a reused PID)
			b.self, b.child = 0, 0
		}
		name := p.comm
		if n, ok := names[pid]; ok {
			name = n
			if n == "converter" {
				by["ffmpeg (converter's children)"] += p.child - b.child
			}
		} else {
			by[name] += p.child - b.child
		}
		by[name] += p.self - b.self
	}
	var total int64
	keys := slices.Collect(maps.Keys(by))
	slices.SortFunc(keys, func(a, b string) int { return int(by[b] - by[a]) })
	var sb strings.Builder
	for _, k := range keys {
		total += by[k]
		if by[k] >= hz/20 { // 50 ms
			fmt.Fprintf(&sb, "%s %.2f, ", k, float64(by[k])/hz)
		}
	}
	return strings.TrimSuffix(sb.String(), ", "), float64(total) / hz
}

// benchPIDs names the suite's four binaries by PID, for cpuSince.
func (s *suite) benchPIDs() map[int]string {
	return map[int]string{s.gateway.PID(): "gateway", s.auth.PID(): "auth",
		s.converter.PID(): "converter", s.notification.PID(): "notification"}
}
