package converter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"mp3converter/internal/logging"
	"mp3converter/internal/readahead"
)

// Temporary videos in ScratchDir are named scratchPattern (os.CreateTemp
// puts digits for the "*"); scratchName matches those names and no others.
const scratchPattern = "converter-*.video"

var scratchName = regexp.MustCompile(`^converter-[0-9]+\.video$`)

// scratchMargin is kept free on ScratchDir's file system beyond a download
// (for whoever else writes there), when there is no ScratchLimit.
const scratchMargin = 64 << 20

// scratchWait bounds how long a job waits for the other jobs of this
// process to give scratch space back before it is retried later instead;
// well below MongoDB's 10-minute idle-cursor timeout (the video's download
// has begun).
const scratchWait = 5 * time.Minute

// scratchSpace hands out room in ScratchDir to this process's temporary
// videos. With a limit (SCRATCH_LIMIT_BYTES: the emptyDir's sizeLimit,
// which the file system's free space does not show) the files in flight
// together stay within it; the file system must also have room for the
// file, beside what the other files in flight have still to write.
type scratchSpace struct {
	dir   string
	limit int64                       // bytes; 0: only the file system's free space
	free  func(string) (int64, error) // freeBytes; replaced in tests
	wait  time.Duration               // scratchWait; replaced in tests

	mu      sync.Mutex
	used    int64         // bytes reserved by the files in flight
	pending int64         // the part of used not written yet (not counted by free)
	changed chan struct{} // closed (and replaced) when room is given back
}

func newScratchSpace(dir string, limit int64) *scratchSpace {
	return &scratchSpace{dir: dir, limit: limit, free: freeBytes, wait: scratchWait, changed: make(chan struct{})}
}

// reservation is the room of one temporary video.
type reservation struct {
	sp              *scratchSpace
	size            int64
	pending, active bool
}

// reserve makes room for a file of size bytes, until release. A file that
// cannot fit even alone (larger than the limit) is a *permanentError. One
// that does not fit beside the other files of this process waits for them
// (up to sp.wait, and while ctx lasts); then, or when the file system is
// full, the error is transient: a retry later may find room.
func (sp *scratchSpace) reserve(ctx context.Context, size int64) (*reservation, error) {
	var (
		timeout <-chan time.Time
		waited  = time.Now()
	)
	for {
		sp.mu.Lock()
		err := sp.check(size)
		if err == nil {
			sp.used += size
			sp.pending += size
			sp.mu.Unlock()
			if timeout != nil {
				logging.From(ctx).Info("scratch space free", "waited", time.Since(waited).Round(time.Millisecond).String())
			}
			return &reservation{sp: sp, size: size, pending: true, active: true}, nil
		}
		others, changed := sp.used > 0, sp.changed
		sp.mu.Unlock()
		var pe *permanentError
		if errors.As(err, &pe) || !others || sp.wait <= 0 {
			return nil, err
		}
		if timeout == nil {
			logging.From(ctx).Info("waiting for other conversions to give scratch space back", "why", err.Error())
			t := time.NewTimer(sp.wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-time.After(2 * time.Second): // the free space may have changed
		case <-timeout:
			return nil, fmt.Errorf("%w (waited %s)", err, sp.wait)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (stopped waiting: %w)", err, ctx.Err())
		}
	}
}

// check tells whether size more bytes fit now; sp.mu is held.
func (sp *scratchSpace) check(size int64) error {
	if sp.limit > 0 {
		if size > sp.limit {
			return permanent(fmt.Sprintf("the file is too large for the converter's scratch space (%s); "+
				"a smaller file, or an MP4 saved for streaming (\"faststart\"), can be converted", logging.Bytes(sp.limit)),
				fmt.Errorf("%d bytes", size))
		}
		if sp.used+size > sp.limit {
			return fmt.Errorf("scratch space %s: %s of its %s limit taken by other conversions, %s needed",
				sp.dir, logging.Bytes(sp.used), logging.Bytes(sp.limit), logging.Bytes(size))
		}
	}
	free, err := sp.free(sp.dir)
	if err != nil {
		return nil // unknown: the write will tell
	}
	margin := int64(scratchMargin)
	if sp.limit > 0 {
		margin = 0 // the limit is the room set aside for these files
	}
	if free-sp.pending < size+margin {
		return fmt.Errorf("scratch space %s: %s free (%s still to be written by other conversions), %s needed",
			sp.dir, logging.Bytes(max(free, 0)), logging.Bytes(sp.pending), logging.Bytes(size+margin))
	}
	return nil
}

// written records that the file is complete: its bytes are on disk, where
// the free space counts them.
func (r *reservation) written() {
	r.sp.mu.Lock()
	defer r.sp.mu.Unlock()
	if r.pending {
		r.pending = false
		r.sp.pending -= r.size
	}
}

// release gives the room back (the file is removed); twice is harmless.
func (r *reservation) release() {
	r.written()
	r.sp.mu.Lock()
	defer r.sp.mu.Unlock()
	if r.active {
		r.active = false
		r.sp.used -= r.size
		close(r.sp.changed)
		r.sp.changed = make(chan struct{})
	}
}

// scratchFile is a temporary video in ScratchDir. It stays open and locked
// (see lockFile) until remove, so that the start-up sweep of another
// converter sharing the directory leaves it alone.
type scratchFile struct {
	path string
	f    *os.File
	res  *reservation
}

// create reserves room for a video of size bytes and creates a new, locked
// temporary file in sp.dir for it.
func (sp *scratchSpace) create(ctx context.Context, size int64) (*scratchFile, error) {
	res, err := sp.reserve(ctx, size)
	if err != nil {
		return nil, err
	}
	for range 10 {
		f, err := os.CreateTemp(sp.dir, scratchPattern)
		if err != nil {
			res.release()
			return nil, fmt.Errorf("temporary file: %w", err)
		}
		switch ok, err := lockFile(f); {
		case errors.Is(err, errors.ErrUnsupported):
		case err != nil:
			f.Close()
			_ = os.Remove(f.Name())
			res.release()
			return nil, fmt.Errorf("lock temporary file: %w", err)
		case !ok || !isFile(f, f.Name()):
			// Another converter's sweep took it between create and lock
			// (and removes it): take another name.
			f.Close()
			continue
		}
		return &scratchFile{path: f.Name(), f: f, res: res}, nil
	}
	res.release()
	return nil, fmt.Errorf("temporary file in %s: could not create and lock one", sp.dir)
}

// remove deletes the file (while still holding its lock), then closes it
// and gives its room back.
func (sf *scratchFile) remove() error {
	err := os.Remove(sf.path)
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	if cerr := sf.f.Close(); err == nil && !errors.Is(cerr, os.ErrClosed) {
		err = cerr
	}
	sf.res.release()
	return err
}

// isFile reports whether path still names the open file f.
func isFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(path)
	return err == nil && os.SameFile(a, b)
}

// sweepScratch removes the temporary videos that converters which died
// without cleaning up (killed, OOM-killed, the node lost) left in dir: the
// regular files named as scratchPattern names them that no running
// converter holds locked. Nothing else is touched. Where files cannot be
// locked (not Linux), nothing is removed: a converter sharing dir may be
// using them.
func sweepScratch(ctx context.Context, dir string, log *slog.Logger) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		log.Warn("scratch directory not swept", "scratch_dir", dir, "err", err)
		return
	}
	var n, bytes int64
	for _, e := range ents {
		if ctx.Err() != nil {
			return
		}
		if !e.Type().IsRegular() || !scratchName.MatchString(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		size, removed, err := removeIfStale(path)
		switch {
		case errors.Is(err, errors.ErrUnsupported):
			log.Debug("scratch directory not swept: files cannot be locked here", "scratch_dir", dir)
			return
		case err != nil:
			log.Warn("stale scratch file not removed", "path", path, "err", err)
		case removed:
			n++
			bytes += size
		}
	}
	if n > 0 {
		log.Info("removed stale scratch files", "scratch_dir", dir, "files", n, "bytes", bytes)
	}
}

// removeIfStale removes path if it is a regular file nobody holds locked.
func removeIfStale(path string) (size int64, removed bool, err error) {
	f, err := openNoFollow(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	ok, err := lockFile(f)
	if err != nil || !ok {
		return 0, false, err // in use by a running converter, or no locks here
	}
	st, err := f.Stat()
	if err != nil {
		return 0, false, err
	}
	if !st.Mode().IsRegular() || !isFile(f, path) {
		return 0, false, nil
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, false, err
	}
	return st.Size(), true, nil
}

// download copies r (size bytes) to a new temporary file in ScratchDir,
// within the scratch space; the caller removes it.
func (s *Service) download(ctx context.Context, r io.Reader, size int64) (*scratchFile, error) {
	sf, err := s.scratch.create(ctx, size)
	if err != nil {
		return nil, err
	}
	ra := readahead.New(r, 8, 1<<20) // the next batch downloads while one is written
	defer ra.Close()
	// A plain io.Writer, so that CopyBuffer uses the larger buffer.
	n, err := io.CopyBuffer(struct{ io.Writer }{sf.f}, ra, make([]byte, 1<<20))
	if err == nil && n != size {
		err = fmt.Errorf("%d bytes downloaded, want %d", n, size)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = sf.remove()
		return nil, fmt.Errorf("download video to %s: %w", s.opt.ScratchDir, err)
	}
	sf.res.written()
	return sf, nil
}
