package gridfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

var _ RangeOpener = (*Bucket)(nil)

// memFile is a RangeOpener of one file in memory: it records each
// OpenRange (offset, length) and how many of the streams were closed.
type memFile struct {
	data    []byte
	err     error // returned by OpenRange when set
	opens   [][2]int64
	closed  int
	current *memStream
}

type memStream struct {
	io.Reader
	f      *memFile
	closed bool
}

func (s *memStream) Close() error {
	if !s.closed {
		s.closed = true
		s.f.closed++
	}
	return nil
}

func (f *memFile) OpenRange(_ context.Context, _ bson.ObjectID, offset, length int64) (io.ReadCloser, FileInfo, error) {
	if f.err != nil {
		return nil, FileInfo{}, f.err
	}
	f.opens = append(f.opens, [2]int64{offset, length})
	end := int64(len(f.data))
	if length >= 0 {
		end = min(end, offset+length)
	}
	f.current = &memStream{Reader: bytes.NewReader(f.data[offset:end]), f: f}
	return f.current, FileInfo{Length: int64(len(f.data))}, nil
}

func TestSeeker(t *testing.T) {
	data := content(1000, 1)
	ranges := []Range{{Start: 10, End: 20}, {Start: 500, End: 600}}
	type step struct {
		seek   int64 // position sought from the start before reading; -1: none
		read   int   // bytes to read after it
		want   []byte
		wantAt int64 // position after the step
	}
	for _, tc := range []struct {
		name   string
		steps  []step
		opens  [][2]int64
		closed int // streams closed before Close
	}{
		{"whole file from the start", []step{{-1, 1000, data, 1000}}, [][2]int64{{0, -1}}, 0},
		{"a planned range is read to its end only", []step{{500, 100, data[500:600], 600}}, [][2]int64{{500, 100}}, 0},
		{"a position that starts no range reads to the end of the file", []step{{15, 985, data[15:], 1000}}, [][2]int64{{15, -1}}, 0},
		{"two ranges: two reads, the first closed", []step{{10, 10, data[10:20], 20}, {500, 100, data[500:600], 600}},
			[][2]int64{{10, 10}, {500, 100}}, 1},
		{"seeking to where it is keeps the stream", []step{{10, 5, data[10:15], 15}, {15, 5, data[15:20], 20}},
			[][2]int64{{10, 10}}, 0},
		{"at the end: nothing is opened", []step{{1000, 10, []byte{}, 1000}}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &memFile{data: data}
			s := NewSeeker(context.Background(), f, bson.NewObjectID(), int64(len(data)), ranges)
			for i, st := range tc.steps {
				if st.seek >= 0 {
					if pos, err := s.Seek(st.seek, io.SeekStart); err != nil || pos != st.seek {
						t.Fatalf("step %d: Seek(%d) = %d, %v", i, st.seek, pos, err)
					}
				}
				got, err := io.ReadAll(io.LimitReader(s, int64(st.read)))
				if err != nil {
					t.Fatalf("step %d: read: %v", i, err)
				}
				if !bytes.Equal(got, st.want) {
					t.Fatalf("step %d: read %d bytes, want %d (%q…)", i, len(got), len(st.want), st.want[:min(len(st.want), 8)])
				}
				if pos, _ := s.Seek(0, io.SeekCurrent); pos != st.wantAt {
					t.Fatalf("step %d: at %d, want %d", i, pos, st.wantAt)
				}
			}
			if !reflect.DeepEqual(f.opens, tc.opens) {
				t.Fatalf("opens %v, want %v", f.opens, tc.opens)
			}
			if f.closed != tc.closed {
				t.Fatalf("%d streams closed before Close, want %d", f.closed, tc.closed)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if f.current != nil && !f.current.closed {
				t.Fatal("Close left the open stream open")
			}
		})
	}
}

func TestSeekerSeek(t *testing.T) {
	const size = 100
	for _, tc := range []struct {
		name    string
		offset  int64
		whence  int
		want    int64
		wantErr bool
	}{
		{"start", 30, io.SeekStart, 30, false},
		{"current", 5, io.SeekCurrent, 45, false},
		{"current back", -40, io.SeekCurrent, 0, false},
		{"end", -10, io.SeekEnd, 90, false},
		{"the end itself", 0, io.SeekEnd, size, false},
		{"before the start", -41, io.SeekCurrent, 0, true},
		{"past the end", 1, io.SeekEnd, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSeeker(context.Background(), &memFile{data: make([]byte, size)}, bson.NewObjectID(), size, nil)
			if _, err := s.Seek(40, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			got, err := s.Seek(tc.offset, tc.whence)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("Seek(%d, %d) = %d, %v; want %d, error %v", tc.offset, tc.whence, got, err, tc.want, tc.wantErr)
			}
			if at, _ := s.Seek(0, io.SeekCurrent); tc.wantErr && at != 40 {
				t.Fatalf("a refused seek moved the position to %d", at)
			}
		})
	}
}

func TestSeekerOpenError(t *testing.T) {
	f := &memFile{data: make([]byte, 10), err: ErrNotFound}
	s := NewSeeker(context.Background(), f, bson.NewObjectID(), 10, nil)
	if _, err := s.Read(make([]byte, 4)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read: %v, want ErrNotFound", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// Over a real bucket, http.ServeContent answers a multi-range request from
// the chunks, across chunk boundaries.
func TestSeekerServeContent(t *testing.T) {
	t.Parallel()
	b, _ := newBucket(t)
	ctx := testCtx(t)
	data := content(3*cs+100, 7)
	info, err := b.Upload(ctx, "a.mp3", bytes.NewReader(data), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ranges := []Range{{Start: cs - 10, End: cs + 10}, {Start: 3*cs + 90, End: 3*cs + 100}}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d,%d-%d", ranges[0].Start, ranges[0].End-1, ranges[1].Start, ranges[1].End-1))
	w := httptest.NewRecorder()
	w.Header().Set("Content-Type", "audio/mpeg")
	s := NewSeeker(ctx, b, info.ID, info.Length, ranges)
	defer s.Close()
	http.ServeContent(w, r, "", time.Time{}, s)
	if w.Code != http.StatusPartialContent {
		t.Fatalf("status %d, want 206", w.Code)
	}
	body := w.Body.Bytes()
	for _, rg := range ranges {
		if !bytes.Contains(body, data[rg.Start:rg.End]) {
			t.Fatalf("the response lacks bytes %d-%d", rg.Start, rg.End-1)
		}
	}
}
