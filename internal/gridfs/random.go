package gridfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// RandomOptions tune a RandomAccess; zero values take the defaults.
type RandomOptions struct {
	// CacheChunks bounds the chunks held (default 32: 8 MiB of 255 KiB
	// chunks), the stream's read-ahead included.
	CacheChunks int
	// Ahead is how many chunks the stream reads ahead of the furthest
	// chunk asked for (default 16, at most half of CacheChunks).
	Ahead int
	// MaxGap, when > 0, fixes the longest forward jump (in chunks) that is
	// read through on the stream rather than fetched on its own; 0 lets
	// the measured costs decide (see RandomAccess).
	MaxGap int
}

func (o RandomOptions) withDefaults() RandomOptions {
	if o.CacheChunks <= 0 {
		o.CacheChunks = 32
	}
	if o.Ahead <= 0 {
		o.Ahead = 16
	}
	o.Ahead = max(1, min(o.Ahead, o.CacheChunks/2))
	return o
}

// RandomAccess reads one stored file at any offset, for a reader such as
// ffmpeg that seeks: to the index at the end of an MP4, then through the
// samples of the one track it wants. It reads whole chunks (the unit the
// server stores) in two ways:
//
//   - a stream: one cursor over the file's chunks from some chunk on, read
//     ahead of the furthest chunk asked for (Ahead chunks), as fast as a
//     plain download;
//   - a fetch: one query for one chunk, for a read far from the stream
//     (the index at the end, a sample many chunks ahead).
//
// A forward jump within the gap is read through on the stream; a longer
// one is fetched, and a reader that then goes on in sequence moves the
// stream there. The gap is what a fetch costs in chunks of the stream
// (both measured as it goes): on MongoDB a fetch is an index lookup and
// costs about one chunk, so only the chunks asked for are read; on
// FerretDB it scans the file's rows and costs dozens, so it reads through.
// The most recently used chunks are kept (CacheChunks), so that a second
// reader of the same bytes (ffprobe, then ffmpeg) costs nothing; memory
// stays within that and one cursor batch, whatever the file size.
type RandomAccess struct {
	b    *Bucket
	info FileInfo
	opt  RandomOptions
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	fetched atomic.Int64 // bytes of chunk data from the server
	queries atomic.Int64 // finds sent (fetches and streams)
	readers atomic.Int64 // readers made: each one's number (see get)

	mu       sync.Mutex
	changed  *sync.Cond // a chunk arrived or the stream ended
	chunks   map[int64]*chunk
	clock    int64 // for least-recently-used eviction
	err      error // the first storage error, sticky for Err
	closed   bool
	st       *stream // nil: none
	noStream bool    // the chunks are not in order on a cursor: fetch each
	// What reading has cost so far: fetches, and the stream's chunks.
	fetchTime, streamTime time.Duration
	fetchN, streamN       int64
}

type chunk struct {
	data []byte
	used int64
}

// stream is the cursor reading the file forward.
type stream struct {
	reader int64 // the number of the reader it was started for
	next   int64 // the chunk it reads next
	target int64 // it reads while next < target
	err    error // why it ended (nil while it runs)
	stop   context.CancelFunc
}

// errStreamMoved ends a stream replaced by one elsewhere.
var errStreamMoved = errors.New("stream moved")

// OpenRandom returns a RandomAccess over file id. Close it when done.
func (b *Bucket) OpenRandom(ctx context.Context, id bson.ObjectID, opt RandomOptions) (*RandomAccess, error) {
	info, err := b.Stat(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if info.ChunkSize <= 0 && info.Length > 0 {
		return nil, fmt.Errorf("open %s: %w: chunk size %d", id.Hex(), ErrCorrupt, info.ChunkSize)
	}
	cctx, stop := context.WithCancel(ctx)
	ra := &RandomAccess{b: b, info: info, opt: opt.withDefaults(), ctx: cctx, stop: stop, chunks: map[int64]*chunk{}}
	ra.changed = sync.NewCond(&ra.mu)
	context.AfterFunc(cctx, func() {
		ra.mu.Lock()
		ra.changed.Broadcast()
		ra.mu.Unlock()
	})
	return ra, nil
}

// Info is the file's document.
func (ra *RandomAccess) Info() FileInfo { return ra.info }

// Size is the file's length.
func (ra *RandomAccess) Size() int64 { return ra.info.Length }

// Fetched is the bytes read from the server so far (a chunk read twice
// counts twice).
func (ra *RandomAccess) Fetched() int64 { return ra.fetched.Load() }

// Queries is the number of finds sent so far.
func (ra *RandomAccess) Queries() int64 { return ra.queries.Load() }

// Err is the first read that failed on the server's side (a storage error,
// a missing or mis-sized chunk: ErrCorrupt), or nil.
func (ra *RandomAccess) Err() error {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	return ra.err
}

// Close stops the stream and waits for it; later reads fail.
func (ra *RandomAccess) Close() error {
	ra.stop()
	ra.mu.Lock()
	ra.closed = true
	ra.changed.Broadcast() // a stream waiting for readers ends
	ra.mu.Unlock()
	ra.wg.Wait()
	return nil
}

// NewReader returns a reader of the file from its start, which may Seek; it
// is for one goroutine. Readers share the chunks read.
func (ra *RandomAccess) NewReader() io.ReadSeeker { return ra.reader(0) }

func (ra *RandomAccess) reader(pos int64) *randomReader {
	return &randomReader{ra: ra, id: ra.readers.Add(1), pos: pos, last: -2}
}

// ReadAt reads len(p) bytes at off (io.ReaderAt).
func (ra *RandomAccess) ReadAt(p []byte, off int64) (int, error) {
	n, err := io.ReadFull(ra.reader(off), p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

// gap is the longest forward jump read through on the stream; ra.mu held.
func (ra *RandomAccess) gap() int64 {
	if ra.opt.MaxGap > 0 {
		return int64(ra.opt.MaxGap)
	}
	if ra.fetchN == 0 || ra.streamN == 0 || ra.streamTime <= 0 {
		return int64(ra.opt.Ahead) // nothing measured yet
	}
	perFetch := ra.fetchTime / time.Duration(ra.fetchN)
	perChunk := max(ra.streamTime/time.Duration(ra.streamN), time.Microsecond)
	return min(max(1, int64(perFetch/perChunk)), int64(ra.opt.CacheChunks))
}

// get returns chunk n's data to reader r. sequential: r read chunk n-1
// and the one before it, so the stream should follow it, unless it was
// started for a newer reader than r and still reads for it (an idle stream,
// read up to its target, is anyone's: its reader may have stopped). Two
// readers far apart that each moved
// the stream to their own place would stall each other, the stream never
// delivering a chunk before it moved again: ffmpeg, after a seek over
// HTTP, starts its new request before it closes the one it left, which
// goes on reading ahead meanwhile. The newer reader is the one ffmpeg
// reads on; the older fetches its chunks on its own until it is closed.
func (ra *RandomAccess) get(r int64, n int64, sequential bool) ([]byte, error) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for {
		if ra.closed {
			return nil, errClosed
		}
		if err := ra.ctx.Err(); err != nil {
			return nil, err
		}
		if c, ok := ra.chunks[n]; ok {
			ra.clock++
			c.used = ra.clock
			if st := ra.st; st != nil && st.err == nil && n+int64(ra.opt.Ahead) >= st.target && n >= st.next-int64(ra.opt.Ahead) {
				st.target = min(n+1+int64(ra.opt.Ahead), ra.info.chunks())
				ra.changed.Broadcast()
			}
			return c.data, nil
		}
		st := ra.st
		switch {
		case st != nil && failed(st.err) && n >= st.next && n-st.next <= ra.gap():
			// The stream failed on its way here: so does this read (the
			// next one tries again).
			ra.st = nil
			return nil, st.err
		case st != nil && st.err == nil && n >= st.next && n-st.next <= ra.gap():
			// On the stream's way: wait for it, reading ahead from there.
			st.target = max(st.target, min(n+1+int64(ra.opt.Ahead), ra.info.chunks()))
			ra.changed.Broadcast()
			ra.changed.Wait()
			continue
		case sequential && !ra.noStream && (st == nil || st.err != nil || r >= st.reader || st.next >= st.target):
			ra.startStream(r, n)
			continue
		}
		// A fetch of its own, without the lock.
		ra.mu.Unlock()
		data, err := ra.fetch(n)
		ra.mu.Lock()
		if err != nil {
			return nil, err
		}
		ra.put(n, data)
	}
}

// failed reports whether a stream ended on a storage error (not at the end
// of the file, moved, or stopped).
func failed(err error) bool {
	return err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, errStreamMoved) && !errors.Is(err, context.Canceled)
}

// put adds chunk n, evicting the least recently used; ra.mu held.
func (ra *RandomAccess) put(n int64, data []byte) {
	if _, ok := ra.chunks[n]; ok {
		return
	}
	for len(ra.chunks) >= ra.opt.CacheChunks {
		var oldest, at int64 = -1, 0
		for k, c := range ra.chunks {
			if oldest < 0 || c.used < at {
				oldest, at = k, c.used
			}
		}
		delete(ra.chunks, oldest)
	}
	ra.clock++
	ra.chunks[n] = &chunk{data: data, used: ra.clock}
	ra.changed.Broadcast()
}

// fail records a storage error.
func (ra *RandomAccess) fail(err error) error {
	err = fmt.Errorf("read %s: %w", ra.info.ID.Hex(), err)
	ra.mu.Lock()
	if ra.err == nil && !ra.closed && ra.ctx.Err() == nil {
		ra.err = err
	}
	ra.mu.Unlock()
	return err
}

// fetch reads chunk n with a query of its own.
func (ra *RandomAccess) fetch(n int64) ([]byte, error) {
	t0 := time.Now()
	ra.queries.Add(1)
	var doc bson.Raw
	err := ra.b.chunks.FindOne(ra.ctx, bson.D{{Key: "files_id", Value: ra.info.ID}, {Key: "n", Value: n}}).Decode(&doc)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return nil, ra.fail(fmt.Errorf("%w: chunk %d missing", ErrCorrupt, n))
	case err != nil:
		return nil, ra.fail(fmt.Errorf("chunk %d: %w", n, err))
	}
	data, err := ra.check(n, doc)
	if err != nil {
		return nil, ra.fail(err)
	}
	ra.fetched.Add(int64(len(data)))
	ra.mu.Lock()
	ra.fetchTime += time.Since(t0)
	ra.fetchN++
	ra.mu.Unlock()
	return data, nil
}

// check returns the data of chunk doc, which must be chunk n.
func (ra *RandomAccess) check(n int64, doc bson.Raw) ([]byte, error) {
	got, ok := doc.Lookup("n").AsInt64OK()
	if !ok || got != n {
		return nil, fmt.Errorf("%w: chunk %v where %d was expected", ErrCorrupt, doc.Lookup("n"), n)
	}
	_, data, ok := doc.Lookup("data").BinaryOK()
	if !ok {
		return nil, fmt.Errorf("%w: chunk %d without binary data", ErrCorrupt, n)
	}
	want := int64(ra.info.ChunkSize)
	if n == ra.info.chunks()-1 {
		want = ra.info.Length - n*int64(ra.info.ChunkSize)
	}
	if int64(len(data)) != want {
		return nil, fmt.Errorf("%w: chunk %d has %d bytes, want %d", ErrCorrupt, n, len(data), want)
	}
	return append([]byte(nil), data...), nil // the driver reuses its buffer
}

// startStream replaces the stream by one from chunk n; ra.mu held.
func (ra *RandomAccess) startStream(r, n int64) {
	if ra.st != nil && ra.st.err == nil {
		ra.st.err = errStreamMoved
		ra.st.stop()
		ra.changed.Broadcast() // it may be waiting for readers
	}
	ctx, stop := context.WithCancel(ra.ctx)
	st := &stream{reader: r, next: n, target: min(n+1+int64(ra.opt.Ahead), ra.info.chunks()), stop: stop}
	ra.st = st
	ra.wg.Add(1)
	go ra.run(ctx, st)
}

// run reads the stream's chunks while it is wanted: from st.next up to
// st.target, which readers move on.
func (ra *RandomAccess) run(ctx context.Context, st *stream) {
	defer ra.wg.Done()
	defer st.stop()
	end := func(err error) {
		ra.mu.Lock()
		if st.err == nil {
			st.err = err
		}
		ra.changed.Broadcast()
		ra.mu.Unlock()
	}
	ra.queries.Add(1)
	filter := bson.D{{Key: "files_id", Value: ra.info.ID}}
	if st.next > 0 {
		filter = append(filter, bson.E{Key: "n", Value: bson.D{{Key: "$gte", Value: st.next}}})
	}
	// Batches of Ahead chunks: the cursor holds no more than the read-ahead.
	cur, err := ra.b.chunks.Find(ctx, filter, options.Find().SetBatchSize(int32(ra.opt.Ahead)))
	if err != nil {
		end(ra.fail(fmt.Errorf("find chunks: %w", err)))
		return
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		_ = cur.Close(cctx)
	}()
	total := ra.info.chunks()
	for {
		ra.mu.Lock()
		for st.err == nil && st.next >= st.target && st.next < total && ctx.Err() == nil && !ra.closed {
			ra.changed.Wait()
		}
		n, stopped := st.next, st.err != nil || ctx.Err() != nil || ra.closed
		ra.mu.Unlock()
		if stopped || n >= total {
			end(io.EOF)
			return
		}
		t0 := time.Now()
		if !cur.Next(ctx) {
			if ctx.Err() != nil {
				end(ctx.Err())
				return
			}
			err := cur.Err()
			if err == nil {
				err = fmt.Errorf("%w: chunk %d missing", ErrCorrupt, n)
			}
			end(ra.fail(err))
			return
		}
		if got, _ := cur.Current.Lookup("n").AsInt64OK(); got != n {
			// Out of order (FerretDB returns rows in their physical order,
			// which deletes can shuffle) or a chunk missing: from now on
			// readers fetch each chunk (and find which one is missing).
			ra.mu.Lock()
			ra.noStream = true
			ra.mu.Unlock()
			end(errStreamMoved)
			return
		}
		data, err := ra.check(n, cur.Current)
		if err != nil {
			end(ra.fail(err))
			return
		}
		ra.fetched.Add(int64(len(data)))
		ra.mu.Lock()
		ra.streamTime += time.Since(t0)
		ra.streamN++
		ra.put(n, data)
		st.next = n + 1
		ra.mu.Unlock()
	}
}

// randomReader is one sequential reader of a RandomAccess.
type randomReader struct {
	ra     *RandomAccess
	id     int64 // its number: readers made later have higher ones
	pos    int64
	last   int64 // chunk this reader read last (-2: none yet)
	streak int   // chunks read in sequence since the last seek
}

func (r *randomReader) Seek(offset int64, whence int) (int64, error) {
	pos := offset
	switch whence {
	case io.SeekCurrent:
		pos += r.pos
	case io.SeekEnd:
		pos += r.ra.info.Length
	}
	if pos < 0 {
		return 0, fmt.Errorf("seek to %d: %w", pos, ErrBadOffset)
	}
	r.pos = pos
	return pos, nil
}

func (r *randomReader) Read(p []byte) (int, error) {
	if r.pos >= r.ra.info.Length {
		return 0, io.EOF
	}
	cs := int64(r.ra.info.ChunkSize)
	n := r.pos / cs
	switch {
	case n == r.last+1:
		r.streak++
	case n != r.last:
		r.streak = 0
	}
	r.last = n
	// A reader that has read a whole chunk and goes on is sequential: the
	// stream follows it. One that only crosses into the next chunk (a
	// sample of one track) is not.
	data, err := r.ra.get(r.id, n, r.streak > 1)
	if err != nil {
		return 0, err
	}
	k := copy(p, data[r.pos-n*cs:])
	r.pos += int64(k)
	return k, nil
}
