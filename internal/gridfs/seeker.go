package gridfs

import (
	"context"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Range is [Start, End) of a file.
type Range struct{ Start, End int64 }

// RangeOpener opens length bytes of file id from offset (length < 0: to the
// end of the file), as Bucket.OpenRange does.
type RangeOpener interface {
	OpenRange(ctx context.Context, id bson.ObjectID, offset, length int64) (io.ReadCloser, FileInfo, error)
}

// Seeker gives http.ServeContent (Range requests) a ReadSeeker over a GridFS
// file: it opens the stream lazily at the position last sought, reading to
// the end of the range that starts there (see NewSeeker), or of the file.
type Seeker struct {
	ctx    context.Context
	store  RangeOpener
	id     bson.ObjectID
	size   int64
	ranges []Range
	pos    int64
	rc     io.ReadCloser
}

// NewSeeker returns a Seeker over file id of size bytes in store, opening
// its streams with ctx. ranges are the ranges the caller plans to read: a
// stream opened at a range's Start stops at its End, so a short range
// costs the chunks that hold it; a stream opened anywhere else runs to the
// end of the file. Close it when done.
func NewSeeker(ctx context.Context, store RangeOpener, id bson.ObjectID, size int64, ranges []Range) *Seeker {
	return &Seeker{ctx: ctx, store: store, id: id, size: size, ranges: ranges}
}

// Seek moves the position; a stream open elsewhere is closed.
func (s *Seeker) Seek(offset int64, whence int) (int64, error) {
	var pos int64
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		pos = s.pos + offset
	case io.SeekEnd:
		pos = s.size + offset
	}
	if pos < 0 || pos > s.size {
		return 0, fmt.Errorf("seek to %d outside 0..%d", pos, s.size)
	}
	if pos != s.pos && s.rc != nil {
		s.rc.Close()
		s.rc = nil
	}
	s.pos = pos
	return pos, nil
}

func (s *Seeker) Read(p []byte) (int, error) {
	if s.pos >= s.size {
		return 0, io.EOF
	}
	if s.rc == nil {
		length := int64(-1)
		for _, rg := range s.ranges {
			if rg.Start == s.pos {
				length = rg.End - rg.Start
				break
			}
		}
		rc, _, err := s.store.OpenRange(s.ctx, s.id, s.pos, length)
		if err != nil {
			return 0, err
		}
		s.rc = rc
	}
	n, err := s.rc.Read(p)
	s.pos += int64(n)
	return n, err
}

// Close closes the open stream, if any.
func (s *Seeker) Close() error {
	if s.rc != nil {
		return s.rc.Close()
	}
	return nil
}
