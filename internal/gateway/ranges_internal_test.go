package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
)

func TestPlanRanges(t *testing.T) {
	const size = 1000
	many := "bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", 2000), ",")
	for _, tc := range []struct {
		name, header string
		want         []gridfs.Range
		rewritten    string // the Range header ServeContent sees; "-" none
	}{
		{"none", "", nil, "-"},
		{"one", "bytes=0-9", []gridfs.Range{{Start: 0, End: 10}}, "bytes=0-9"},
		{"open end", "bytes=990-", []gridfs.Range{{Start: 990, End: 1000}}, "bytes=990-999"},
		{"suffix", "bytes=-5", []gridfs.Range{{Start: 995, End: 1000}}, "bytes=995-999"},
		{"suffix longer than the file", "bytes=-5000", []gridfs.Range{{Start: 0, End: 1000}}, "bytes=0-999"},
		{"end past the file", "bytes=900-5000", []gridfs.Range{{Start: 900, End: 1000}}, "bytes=900-999"},
		{"overlapping, unsorted", "bytes=50-99, 0-9, 5-20, 60-70", []gridfs.Range{{Start: 0, End: 21}, {Start: 50, End: 100}}, "bytes=0-20,50-99"},
		{"adjacent merged", "bytes=0-9,10-19", []gridfs.Range{{Start: 0, End: 20}}, "bytes=0-19"},
		{"same range twice", "bytes=3-4,3-4", []gridfs.Range{{Start: 3, End: 5}}, "bytes=3-4"},
		{"one past the end dropped", "bytes=0-1,2000-2001", []gridfs.Range{{Start: 0, End: 2}}, "bytes=0-1"},
		{"all past the end: left for 416", "bytes=2000-2001", nil, "bytes=2000-2001"},
		{"16 ranges kept", "bytes=" + strings.TrimSuffix(strings.Repeat("1-1,", 16), ","), []gridfs.Range{{Start: 1, End: 2}}, "bytes=1-1"},
		{"17 ranges: whole file", "bytes=" + strings.TrimSuffix(strings.Repeat("1-1,", 17), ","), nil, "-"},
		{"2000 ranges: whole file", many, nil, "-"},
		{"garbage: left as is", "bytes=a-b", nil, "bytes=a-b"},
		{"other unit: left as is", "items=0-1", nil, "items=0-1"},
		{"reversed: left as is", "bytes=9-1", nil, "bytes=9-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "/download", nil)
			if tc.header != "" {
				r.Header.Set("Range", tc.header)
			}
			got := planRanges(r, size)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ranges = %v, want %v", got, tc.want)
			}
			h, ok := r.Header["Range"]
			switch {
			case tc.rewritten == "-" && ok:
				t.Fatalf("Range header %q left, want none", h)
			case tc.rewritten != "-" && (!ok || h[0] != tc.rewritten):
				t.Fatalf("Range header %q, want %q", h, tc.rewritten)
			}
		})
	}
}

// fakeMP3s serves one file from memory and records each OpenRange.
type fakeMP3s struct {
	data  []byte
	opens [][2]int64 // offset, length
}

func (f *fakeMP3s) OwnerBytes(context.Context, string) (int64, error) { return 0, nil }
func (f *fakeMP3s) Delete(context.Context, bson.ObjectID) error       { return nil }

func (f *fakeMP3s) Stat(context.Context, bson.ObjectID) (gridfs.FileInfo, error) {
	return gridfs.FileInfo{Length: int64(len(f.data))}, nil
}

func (f *fakeMP3s) OpenRange(_ context.Context, _ bson.ObjectID, offset, length int64) (io.ReadCloser, gridfs.FileInfo, error) {
	f.opens = append(f.opens, [2]int64{offset, length})
	end := int64(len(f.data))
	if length >= 0 {
		end = min(end, offset+length)
	}
	return io.NopCloser(bytes.NewReader(f.data[offset:end])), gridfs.FileInfo{Length: int64(len(f.data))}, nil
}

// Each range of a response is one storage read of exactly that range; a
// request for more ranges than maxRanges reads the file once, whole.
func TestDownloadReadsOnlyTheRanges(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100)
	for _, tc := range []struct {
		name, header string
		status       int
		opens        [][2]int64
	}{
		{"whole", "", 200, [][2]int64{{0, -1}}},
		{"one range", "bytes=100-199", 206, [][2]int64{{100, 100}}},
		{"overlapping", "bytes=500-599,0-9,5-14", 206, [][2]int64{{0, 15}, {500, 100}}},
		{"2000 one-byte ranges", "bytes=" + strings.TrimSuffix(strings.Repeat("7-7,", 2000), ","), 200, [][2]int64{{0, -1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &fakeMP3s{data: data}
			r := httptest.NewRequest("GET", "/download", nil)
			if tc.header != "" {
				r.Header.Set("Range", tc.header)
			}
			w := httptest.NewRecorder()
			w.Header().Set("Content-Type", "audio/mpeg") // as download sets it: no sniffing read
			src := gridfs.NewSeeker(context.Background(), store, bson.ObjectID{}, int64(len(data)), planRanges(r, int64(len(data))))
			http.ServeContent(w, r, "", time.Time{}, src)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if !reflect.DeepEqual(store.opens, tc.opens) {
				t.Fatalf("storage reads %v, want %v", store.opens, tc.opens)
			}
			if tc.status == 200 && !bytes.Equal(w.Body.Bytes(), data) {
				t.Fatalf("body of %d bytes, want the whole %d", w.Body.Len(), len(data))
			}
		})
	}
}
