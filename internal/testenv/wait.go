package testenv

import "time"

// Poll calls cond as Eventually does (every 10 ms at first, backing off to
// 200 ms) until it holds, and reports whether it did within within. It is
// Eventually for a caller that fails with its own account of what it saw
// (the last state, a screenshot) or that carries on with whatever there is.
// The bound is how long a wait may take on a loaded, shared machine, never
// a performance assertion.
func Poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for wait := 10 * time.Millisecond; !cond(); wait = min(2*wait, 200*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
	return true
}
