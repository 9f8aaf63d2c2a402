package gridfs

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Open returns a reader of file id from byte offset (0 ≤ offset ≤ Length),
// and the file's document. The reader uses ctx for every fetch; close it
// when done.
//
// Chunks come from one cursor over the file's chunks from the first one
// needed, in batches of ≈4 MiB, and are checked to arrive in order: MongoDB
// returns them in the order of the {files_id:1, n:1} index, FerretDB in
// insertion order, without a server-side sort of the whole file. Should they
// not be in order, the reader continues with sorted queries of a few chunks
// each. A missing or mis-sized chunk is ErrCorrupt.
func (b *Bucket) Open(ctx context.Context, id bson.ObjectID, offset int64) (io.ReadCloser, FileInfo, error) {
	return b.OpenRange(ctx, id, offset, -1)
}

// OpenRange is Open for the length bytes from offset (length < 0: to the
// end of the file): it asks the server for the chunks that hold them and no
// others, so a short range costs a chunk or two, not a batch of ≈4 MiB.
func (b *Bucket) OpenRange(ctx context.Context, id bson.ObjectID, offset, length int64) (io.ReadCloser, FileInfo, error) {
	info, err := b.Stat(ctx, id)
	if err != nil {
		return nil, FileInfo{}, fmt.Errorf("open: %w", err)
	}
	if offset < 0 || offset > info.Length {
		return nil, FileInfo{}, fmt.Errorf("open %s at %d of %d bytes: %w", id.Hex(), offset, info.Length, ErrBadOffset)
	}
	if info.ChunkSize <= 0 && info.Length > 0 {
		return nil, FileInfo{}, fmt.Errorf("open %s: %w: chunk size %d", id.Hex(), ErrCorrupt, info.ChunkSize)
	}
	if length < 0 || length > info.Length-offset {
		length = info.Length - offset
	}
	r := &reader{ctx: ctx, chunks: b.chunks, info: info, total: info.chunks(), left: length}
	if length == 0 {
		r.next, r.stop = r.total, r.total
	} else {
		r.next = offset / int64(info.ChunkSize)
		r.skip = int(offset % int64(info.ChunkSize))
		r.stop = (offset+length-1)/int64(info.ChunkSize) + 1
	}
	r.batch = int32(min(max(1, batchBytes/int(max(1, info.ChunkSize))), int(max(1, r.stop-r.next))))
	return r, info, nil
}

// reader streams one file's chunks.
type reader struct {
	ctx    context.Context
	chunks *mongo.Collection
	info   FileInfo
	total  int64 // chunks in the file
	stop   int64 // n past the last chunk to read
	left   int64 // bytes still to return
	batch  int32 // cursor batch size, in chunks

	next   int64  // n of the next chunk to load
	skip   int    // bytes to skip in that chunk (the offset)
	buf    []byte // unread rest of the current chunk, a view of cur.Current
	cur    *mongo.Cursor
	sorted bool  // fallback: sorted range queries
	end    int64 // in sorted mode: n past the current range
	err    error // sticky
}

func (r *reader) Read(p []byte) (int, error) {
	if r.left <= 0 && r.err == nil {
		return 0, io.EOF
	}
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.next >= r.stop || r.left <= 0 {
			return 0, io.EOF
		}
		if err := r.load(); err != nil {
			r.err = fmt.Errorf("read %s chunk %d: %w", r.info.ID.Hex(), r.next, err)
			r.closeCursor()
			return 0, r.err
		}
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.left -= int64(n)
	return n, nil
}

// load makes chunk r.next the current one.
func (r *reader) load() error {
	for reopened := 0; ; {
		if r.cur == nil {
			if err := r.open(); err != nil {
				return err
			}
		}
		if r.cur.Next(r.ctx) {
			doc := r.cur.Current
			n, ok := doc.Lookup("n").AsInt64OK()
			if !ok {
				return fmt.Errorf("%w: chunk without a numeric n", ErrCorrupt)
			}
			if n != r.next {
				if r.sorted {
					return fmt.Errorf("%w: chunk missing (next is %d)", ErrCorrupt, n)
				}
				// Out of order: FerretDB returns rows in their physical
				// order, which deletes and reuse of space can shuffle.
				r.closeCursor()
				r.sorted = true
				continue
			}
			_, data, ok := doc.Lookup("data").BinaryOK()
			if !ok {
				return fmt.Errorf("%w: chunk without binary data", ErrCorrupt)
			}
			want := int64(r.info.ChunkSize)
			if n == r.total-1 {
				want = r.info.Length - n*int64(r.info.ChunkSize)
			}
			if int64(len(data)) != want {
				return fmt.Errorf("%w: chunk has %d bytes, want %d", ErrCorrupt, len(data), want)
			}
			r.buf = data[r.skip:]
			r.skip = 0
			r.next++
			return nil
		}
		err := r.cur.Err()
		r.closeCursor()
		switch {
		case err != nil && isCursorNotFound(err) && reopened < 3:
			// The server dropped an idle cursor (slow client): resume.
			reopened++
		case err != nil:
			return err
		case r.sorted && r.next == r.end:
			// This range is done: go on with the next one.
		default:
			return fmt.Errorf("%w: chunk missing", ErrCorrupt)
		}
	}
}

// open starts the cursor at chunk r.next.
func (r *reader) open() error {
	filter := bson.D{{Key: "files_id", Value: r.info.ID}}
	var opts *options.FindOptionsBuilder
	if !r.sorted {
		switch {
		case r.stop < r.total:
			filter = append(filter, bson.E{Key: "n", Value: bson.D{{Key: "$gte", Value: r.next}, {Key: "$lt", Value: r.stop}}})
		case r.next > 0:
			filter = append(filter, bson.E{Key: "n", Value: bson.D{{Key: "$gte", Value: r.next}}})
		}
		opts = options.Find().SetBatchSize(r.batch)
	} else {
		r.end = min(r.next+fallbackRange, r.stop)
		filter = append(filter, bson.E{Key: "n", Value: bson.D{{Key: "$gte", Value: r.next}, {Key: "$lt", Value: r.end}}})
		opts = options.Find().
			SetSort(bson.D{{Key: "n", Value: 1}}).
			SetBatchSize(int32(r.end - r.next + 1))
	}
	cur, err := r.chunks.Find(r.ctx, filter, opts)
	if err != nil {
		return fmt.Errorf("find chunks: %w", err)
	}
	r.cur = cur
	return nil
}

func (r *reader) closeCursor() {
	if r.cur == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), cleanupTimeout)
	defer cancel()
	_ = r.cur.Close(ctx)
	r.cur = nil
}

// Close releases the server cursor. Reading after Close is an error.
func (r *reader) Close() error {
	r.closeCursor()
	r.buf = nil
	if r.err == nil {
		r.err = errClosed
	}
	return nil
}

var errClosed = errors.New("gridfs: read after close")
