package gridfs

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/event"
)

// chunkCounter counts the chunk documents the server sends in replies to
// find and getMore on fs.chunks: what a read costs the database, batches
// included (not only what the reader hands on).
type chunkCounter struct{ docs atomic.Int64 }

func (c *chunkCounter) monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) {
		if e.CommandName != "find" && e.CommandName != "getMore" {
			return
		}
		for _, key := range []string{"firstBatch", "nextBatch"} {
			if v, err := e.Reply.LookupErr("cursor", key); err == nil {
				if arr, ok := v.ArrayOK(); ok {
					vals, _ := arr.Values()
					for _, d := range vals {
						if doc, ok := d.DocumentOK(); ok {
							if _, err := doc.LookupErr("files_id"); err == nil {
								c.docs.Add(1)
							}
						}
					}
				}
			}
		}
	}}
}

// OpenRange reads exactly the bytes asked for, and the server sends only
// the chunks that hold them (a short range used to cost a 4 MiB batch).
func TestOpenRangeReadsOnlyItsChunks(t *testing.T) {
	t.Parallel()
	b, counter := countedBucket(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const chunk = 255 << 10
	data := content(40*chunk+1000, 7) // 41 chunks
	info, err := b.Upload(ctx, "f", bytes.NewReader(data), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		offset, length int64
		wantChunks     int64
	}{
		{"one byte", 5*chunk + 10, 1, 1},
		{"inside one chunk", 5*chunk + 10, 1000, 1},
		{"across two chunks", 6*chunk - 10, 20, 2},
		{"three chunks", 7*chunk - 1, chunk + 2, 3},
		{"the last bytes", int64(len(data)) - 5, 5, 1},
		{"to the end", 38 * chunk, -1, 3},
		{"length past the end", 39 * chunk, 10 * chunk, 2},
		{"nothing", 3 * chunk, 0, 0},
		{"whole file", 0, -1, 41},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counter.docs.Load()
			rc, _, err := b.OpenRange(ctx, info.ID, tc.offset, tc.length)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			end := int64(len(data))
			if tc.length >= 0 {
				end = min(tc.offset+tc.length, end)
			}
			if !bytes.Equal(got, data[tc.offset:end]) {
				t.Fatalf("read %d bytes, want %d (bytes %d..%d)", len(got), end-tc.offset, tc.offset, end)
			}
			if n := counter.docs.Load() - before; n != tc.wantChunks {
				t.Fatalf("the server sent %d chunks, want %d", n, tc.wantChunks)
			}
		})
	}
}
