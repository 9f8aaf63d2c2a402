// Package readahead reads a source in a goroutine, ahead of its consumer.
package readahead

import (
	"errors"
	"io"
)

// Reader reads its source in a goroutine, up to n buffers of size bytes
// ahead of its consumer: a download (whose batches arrive in bursts) and
// ffmpeg (which reads or writes a little at a time through a 64 KiB pipe)
// then work at the same time instead of taking turns. Memory is bounded by
// n·size.
type Reader struct {
	full  chan []byte // filled buffers, in order; closed after the last
	free  chan []byte // buffers to refill
	stop  chan struct{}
	done  chan struct{}
	err   error  // why the source ended (io.EOF at the end); read after full is closed
	cur   []byte // unread part of the current buffer
	owned []byte // the current buffer, to hand back
}

// New starts reading src, n buffers of size bytes ahead; the caller
// Closes the Reader.
func New(src io.Reader, n, size int) *Reader {
	ra := &Reader{full: make(chan []byte, n), free: make(chan []byte, n),
		stop: make(chan struct{}), done: make(chan struct{})}
	for range n {
		ra.free <- make([]byte, size)
	}
	go ra.fill(src)
	return ra
}

func (ra *Reader) fill(src io.Reader) {
	defer close(ra.done)
	defer close(ra.full)
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			ra.err = errClosed
			return
		}
		k, err := io.ReadFull(src, buf[:cap(buf)])
		if k > 0 {
			select {
			case ra.full <- buf[:k]:
			case <-ra.stop:
				ra.err = errClosed
				return
			}
		}
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			ra.err = io.EOF
			return
		case err != nil:
			ra.err = err
			return
		}
	}
}

// Read returns the source's bytes, then its error (io.EOF at the end).
func (ra *Reader) Read(p []byte) (int, error) {
	for len(ra.cur) == 0 {
		if ra.owned != nil {
			ra.free <- ra.owned[:cap(ra.owned)]
			ra.owned = nil
		}
		buf, ok := <-ra.full
		if !ok {
			return 0, ra.err
		}
		ra.cur, ra.owned = buf, buf
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// Close stops the goroutine and waits for it; a source Read in progress is
// waited for, so the caller must make it return (cancel its context or
// close it) first or soon.
func (ra *Reader) Close() error {
	select {
	case <-ra.stop:
	default:
		close(ra.stop)
	}
	<-ra.done
	return nil
}

// errClosed is what Read returns after Close stopped the reading early.
var errClosed = errors.New("read-ahead closed")
