package testenv

import (
	"context"
	"testing"
	"time"

	"mp3converter/internal/app"
)

// InProcess runs a binary's Run in the test's own process (run is, say,
// func(ctx) error { return gateway.Run(ctx, cfg, log) } with its ports at 0)
// and returns where its servers listen once they serve. The test's end
// cancels it and waits for it to return; an error it returns then fails
// the test.
func InProcess(t testing.TB, name string, run func(ctx context.Context) error) app.Addrs {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan app.Addrs, 1)
	finished := make(chan struct{})
	var err error
	go func() {
		defer close(finished)
		err = run(app.WithStarted(ctx, func(a app.Addrs) { addrs <- a }))
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
		if err != nil {
			t.Errorf("%s returned: %v", name, err)
		}
	})
	select {
	case a := <-addrs:
		return a
	case <-finished:
		t.Fatalf("%s ended at start: %v", name, err)
	case <-time.After(time.Minute):
		t.Fatalf("%s did not start serving within a minute", name)
	}
	return app.Addrs{}
}
