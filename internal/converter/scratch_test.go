//go:build linux

package converter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/jobs"
	"mp3converter/internal/mq"
)

// At start the converter removes the temporary videos a killed converter
// left in SCRATCH_DIR: only files named as it names them, and only those no
// running converter holds (a SCRATCH_DIR such as the default /tmp may be
// shared). Nothing else in the directory is touched.
func TestStaleScratchFilesAreRemovedAtStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	dir, outside := t.TempDir(), t.TempDir()
	write := func(name string, size int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stale := []string{"converter-1234567890.video", "converter-42.video"}
	for _, n := range stale {
		write(n, 256<<10)
	}
	kept := []string{"converter-abc.video", "converter-1.video.bak", "converter-.video", "xconverter-5.video",
		"notes.txt", "converter-2.mp4", "converter-media-9"}
	for _, n := range kept {
		write(n, 10)
	}
	// A directory and a symlink with the pattern's name are not its files.
	if err := os.Mkdir(filepath.Join(dir, "converter-7.video"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "converter-7.video", "inside"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(outside, "target")
	if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "converter-8.video")); err != nil {
		t.Fatal(err)
	}
	// A file in use by another converter running on the same directory:
	// it holds the file locked, as converters do while a job uses it.
	busy := "converter-99.video"
	write(busy, 10)
	f, err := os.Open(filepath.Join(dir, busy))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, "converter-7.video", "converter-8.video", busy)

	opt := h.options()
	opt.ScratchDir = dir
	h.start(h.deps(), opt)
	// Not faststart: converted through a temporary file in dir, after the
	// start-up sweep.
	h.converts("mp4", "s.mp4")

	var left []string
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		left = append(left, e.Name())
	}
	for _, n := range stale {
		if slices.Contains(left, n) {
			t.Errorf("stale scratch file %s not removed", n)
		}
	}
	for _, n := range kept {
		if !slices.Contains(left, n) {
			t.Errorf("%s removed: not a stale scratch file of the converter", n)
		}
	}
	if len(left) != len(kept) {
		t.Errorf("scratch directory holds %v, want %v", left, kept)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "keep me" {
		t.Errorf("symlink target: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "converter-7.video", "inside")); err != nil {
		t.Errorf("file inside a directory named like a scratch file: %v", err)
	}
}

// SCRATCH_LIMIT_BYTES (the emptyDir's sizeLimit) bounds the temporary
// files: a video that needs more than the whole limit fails for good with
// a clear reason (a faststart MP4, which needs none, still converts); one
// that would exceed what other conversions in flight leave waits for them
// (then, after scratchWait, it would be retried later: TestScratchReserve)
// and converts once they are done.
func TestScratchLimit(t *testing.T) {
	t.Parallel()
	size := func(name string) int64 {
		st, err := os.Stat(media(t, name))
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}

	t.Run("larger than the limit", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		opt := h.options()
		opt.SeekableInput = false // the scratch space is the temporary-file path's
		opt.ScratchLimit = min(size("mp4"), size("mp4-faststart")) - 1
		h.start(h.deps(), opt)
		fid := h.submitFile(media(t, "mp4"), "big.mp4", user)
		h.checkFailed(fid, "too large for the converter's scratch space")
		fast := h.submitFile(media(t, "mp4-faststart"), "fast.mp4", user)
		if j := h.waitJob(fast, time.Minute); j.Status != jobs.Done {
			t.Fatalf("faststart job %+v, want done (it needs no scratch space)", j)
		}
		if n := h.result(resultRetry); n != 0 {
			t.Errorf("%d retries, want none", n)
		}
	})

	t.Run("room taken by jobs in flight", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		opt := h.options()
		opt.SeekableInput = false
		opt.ScratchLimit = size("mp4") * 3 / 2 // room for one at a time
		opt.Consume.Concurrency = 2
		opt.FFmpegPath = slowFFmpeg(t, h.ffmpeg) // each holds its file for 3 s
		var most, stop atomic.Int32
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			name := regexp.MustCompile(`^converter-[0-9]+\.video$`)
			for stop.Load() == 0 {
				n := int32(0)
				ents, _ := os.ReadDir(opt.ScratchDir)
				for _, e := range ents {
					if name.MatchString(e.Name()) {
						n++
					}
				}
				if n > most.Load() {
					most.Store(n)
				}
				// Paces the sampling: each file lives through a 3 s
				// conversion, so two at once show in many samples.
				time.Sleep(5 * time.Millisecond)
			}
		}()
		h.start(h.deps(), opt)
		a := h.submitFile(media(t, "mp4"), "a.mp4", user)
		b := h.submitFile(media(t, "mp4"), "b.mp4", user)
		for _, fid := range []string{a, b} {
			if j := h.waitJob(fid, 2*time.Minute); j.Status != jobs.Done {
				t.Fatalf("job %+v, want done", j)
			}
		}
		stop.Store(1)
		<-watched
		h.checkMP3(a, media(t, "mp4"), "a.mp3", user)
		h.checkMP3(b, media(t, "mp4"), "b.mp3", user)
		if n := most.Load(); n != 1 {
			t.Errorf("%d temporary files at once, want 1 (the limit has room for one)", n)
		}
		if n := h.result(resultRetry); n != 0 {
			t.Errorf("%d retries: the second job should wait for the room, not fail", n)
		}
		if n := h.queueDepth(mq.DeadLetterQueue(h.videoQ)); n != 0 {
			t.Errorf("%d dead-lettered", n)
		}
	})
}

// The accounting behind the limit: reservations of this process, and the
// file system's free space minus what reserved files have still to write.
func TestScratchReserve(t *testing.T) {
	const mib = 1 << 20
	ctx := context.Background()
	free := atomic.Int64{}
	free.Store(1000 * mib)
	sp := newScratchSpace(t.TempDir(), 300*mib)
	sp.free = func(string) (int64, error) { return free.Load(), nil }
	sp.wait = 0 // no waiting: the transient error at once

	var pe *permanentError
	if _, err := sp.reserve(ctx, 301*mib); !errors.As(err, &pe) || !strings.Contains(pe.reason, "too large for the converter's scratch space (300 MiB)") {
		t.Fatalf("reserve beyond the limit: %v, want a permanent failure naming the limit", err)
	}
	r1, err := sp.reserve(ctx, 200*mib)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.reserve(ctx, 101*mib); err == nil || errors.Is(err, mq.ErrPermanent) {
		t.Fatalf("reserve beyond what is left: %v, want a transient error", err)
	}
	r2, err := sp.reserve(ctx, 100*mib)
	if err != nil {
		t.Fatalf("reserve what is left: %v", err)
	}
	r1.release()
	r1.release() // twice is harmless
	r2.release()
	if sp.used != 0 || sp.pending != 0 {
		t.Fatalf("after release: used %d, pending %d", sp.used, sp.pending)
	}

	// Waiting: a file that does not fit beside another waits for it to be
	// released, up to sp.wait.
	sp.wait = time.Minute
	r1, err = sp.reserve(ctx, 200*mib)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		r, err := sp.reserve(ctx, 200*mib)
		if err == nil {
			r.release()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("reserve beside a 200 MiB file within 300 MiB returned at once: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	r1.release()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("reserve after the other was released: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reserve still waiting after the other file was released")
	}
	sp.wait = 50 * time.Millisecond
	r1, _ = sp.reserve(ctx, 200*mib)
	if _, err := sp.reserve(ctx, 200*mib); err == nil || errors.Is(err, mq.ErrPermanent) || !strings.Contains(err.Error(), "waited") {
		t.Fatalf("reserve after waiting in vain: %v, want a transient error", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := sp.reserve(cctx, 200*mib); !errors.Is(err, context.Canceled) {
		t.Fatalf("reserve with a cancelled context: %v", err)
	}
	r1.release()

	// No limit: the free space, less what reserved files will still write
	// and a margin.
	sp = newScratchSpace(t.TempDir(), 0)
	sp.free = func(string) (int64, error) { return free.Load(), nil }
	sp.wait = 0
	r1, err = sp.reserve(ctx, 600*mib)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.reserve(ctx, 400*mib); err == nil || errors.Is(err, mq.ErrPermanent) {
		t.Fatalf("reserve beyond the free space left: %v, want a transient error", err)
	}
	r1.written() // its bytes are on disk: the free space shows them
	free.Add(-600 * mib)
	if _, err := sp.reserve(ctx, 400*mib); err == nil {
		t.Fatal("reserve beyond the free space accepted")
	}
	r2, err = sp.reserve(ctx, 300*mib)
	if err != nil {
		t.Fatalf("reserve within the free space: %v", err)
	}
	r1.release()
	r2.release()
}

func TestScratchLimitConfig(t *testing.T) {
	cfg, err := config.LoadFrom[Config](map[string]string{"SCRATCH_LIMIT_BYTES": "5368709120"})
	if err != nil {
		t.Fatal(err)
	}
	opt, err := cfg.Options()
	if err != nil || opt.ScratchLimit != 5<<30 {
		t.Fatalf("ScratchLimit %d, %v; want 5 GiB", opt.ScratchLimit, err)
	}
	cfg, err = config.LoadFrom[Config](map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if opt, err := cfg.Options(); err != nil || opt.ScratchLimit != 0 {
		t.Fatalf("default ScratchLimit %d, %v; want 0", opt.ScratchLimit, err)
	}
	cfg, err = config.LoadFrom[Config](map[string]string{"SCRATCH_LIMIT_BYTES": "-1"})
	if err == nil {
		_, err = cfg.Options()
	}
	if err == nil || !strings.Contains(err.Error(), "SCRATCH_LIMIT_BYTES") {
		t.Fatalf("negative SCRATCH_LIMIT_BYTES: %v, want an error naming it", err)
	}
}
