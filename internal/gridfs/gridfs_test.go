package gridfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"mp3converter/internal/testenv"
)

const cs = DefaultChunkSize

func newBucket(t testing.TB) (*Bucket, *mongo.Database) {
	t.Helper()
	db := testenv.Mongo(t)
	b, err := NewBucket(db)
	if err != nil {
		t.Fatal(err)
	}
	return b, db
}

// content returns n pseudo-random bytes that differ per seed.
func content(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 42})
	_, _ = r.Read(b)
	return b
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func readAll(t testing.TB, b *Bucket, id bson.ObjectID, offset int64) []byte {
	t.Helper()
	rc, _, err := b.Open(testCtx(t), id, offset)
	if err != nil {
		t.Fatalf("open %s at %d: %v", id.Hex(), offset, err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s at %d: %v", id.Hex(), offset, err)
	}
	return got
}

// count returns the number of documents in fs.files and fs.chunks.
func count(t testing.TB, db *mongo.Database) (files, chunks int64) {
	t.Helper()
	ctx := testCtx(t)
	files, err := db.Collection("fs.files").CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	chunks, err = db.Collection("fs.chunks").CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	return files, chunks
}

func assertEmpty(t testing.TB, db *mongo.Database) {
	t.Helper()
	if f, c := count(t, db); f != 0 || c != 0 {
		t.Errorf("after a failed upload: %d files documents and %d chunks left, want none", f, c)
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	for i, size := range []int{0, 1, cs - 1, cs, cs + 1, 5<<20 + 123} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			data := content(size, uint64(i))
			meta := bson.M{"video_fid": "v" + fmt.Sprint(i), "username": "a@b.c"}
			info, err := b.Upload(testCtx(t), "f.mp4", bytes.NewReader(data), meta, UploadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if info.Length != int64(size) || info.ChunkSize != cs || info.Name != "f.mp4" || info.ID.IsZero() {
				t.Errorf("upload info = %+v", info)
			}
			st, err := b.Stat(testCtx(t), info.ID)
			if err != nil {
				t.Fatal(err)
			}
			if st.Length != info.Length || st.ChunkSize != info.ChunkSize || !st.UploadDate.Equal(info.UploadDate) || st.Name != info.Name {
				t.Errorf("stat = %+v, upload returned %+v", st, info)
			}
			if got := st.Metadata.Lookup("video_fid").StringValue(); got != meta["video_fid"] {
				t.Errorf("metadata.video_fid = %q", got)
			}
			n, err := db.Collection("fs.chunks").CountDocuments(testCtx(t), bson.D{{Key: "files_id", Value: info.ID}})
			if err != nil {
				t.Fatal(err)
			}
			if want := int64((size + cs - 1) / cs); n != want {
				t.Errorf("%d chunks, want %d", n, want)
			}
			if got := readAll(t, b, info.ID, 0); !bytes.Equal(got, data) {
				t.Errorf("read back %d bytes, differ from the %d uploaded", len(got), len(data))
			}
		})
	}
}

// UploadOptions.Metadata gives the metadata once the last byte is read:
// what is known only then is in the files document.
func TestUploadMetadataAtTheEnd(t *testing.T) {
	t.Parallel()
	b, _ := newBucket(t)
	data := content(2*cs+5, 3)
	r := &countingReader{r: bytes.NewReader(data)}
	info, err := b.Upload(testCtx(t), "f", r, bson.M{"early": true}, UploadOptions{
		Metadata: func() any { return bson.M{"bytes_read": r.n} }})
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.Stat(testCtx(t), info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := st.Metadata.Lookup("bytes_read").AsInt64OK(); !ok || n != int64(len(data)) || st.Metadata.Lookup("early").Type != 0 {
		t.Errorf("metadata %v; want bytes_read %d alone", st.Metadata, len(data))
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestOpenOffsets(t *testing.T) {
	t.Parallel()
	b, _ := newBucket(t)
	data := content(3*cs+100, 7)
	info, err := b.Upload(testCtx(t), "f", bytes.NewReader(data), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Metadata != nil {
		t.Errorf("metadata = %v, want none", info.Metadata)
	}
	size := int64(len(data))
	for _, off := range []int64{0, 17, cs + 17, cs, 2 * cs, 3 * cs, size - 1, size} {
		if got := readAll(t, b, info.ID, off); !bytes.Equal(got, data[off:]) {
			t.Errorf("offset %d: read %d bytes, want the %d from the offset", off, len(got), size-off)
		}
	}
	for _, off := range []int64{-1, size + 1} {
		if _, _, err := b.Open(testCtx(t), info.ID, off); !errors.Is(err, ErrBadOffset) {
			t.Errorf("offset %d: err = %v, want ErrBadOffset", off, err)
		}
	}
	// Small reads across chunk boundaries.
	rc, _, err := b.Open(testCtx(t), info.ID, cs-3)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	p := make([]byte, 5)
	if _, err := io.ReadFull(rc, p); err != nil || !bytes.Equal(p, data[cs-3:cs+2]) {
		t.Errorf("read across a boundary: %v %x", err, p)
	}
}

func TestInterop(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	gb := db.GridFSBucket()
	ctx := testCtx(t)

	t.Run("driver reads ours", func(t *testing.T) {
		data := content(3*cs+5, 1)
		info, err := b.Upload(ctx, "ours.mp4", bytes.NewReader(data), bson.M{"k": "v"}, UploadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := gb.DownloadToStream(ctx, info.ID, &buf); err != nil {
			t.Fatalf("driver download: %v", err)
		}
		if !bytes.Equal(buf.Bytes(), data) {
			t.Error("driver read different bytes")
		}
		cur, err := gb.Find(ctx, bson.D{{Key: "_id", Value: info.ID}})
		if err != nil {
			t.Fatal(err)
		}
		var files []mongo.GridFSFile
		if err := cur.All(ctx, &files); err != nil {
			t.Fatal(err)
		}
		if len(files) != 1 || files[0].Name != "ours.mp4" || files[0].Length != int64(len(data)) || files[0].ChunkSize != cs ||
			bson.Raw(files[0].Metadata).Lookup("k").StringValue() != "v" {
			t.Errorf("driver sees %+v", files)
		}
	})

	t.Run("we read the driver's", func(t *testing.T) {
		data := content(2<<20+9, 2)
		opts := options.GridFSUpload().SetChunkSizeBytes(100_000).SetMetadata(bson.M{"video_fid": "x"})
		id, err := gb.UploadFromStream(ctx, "theirs.mp3", bytes.NewReader(data), opts)
		if err != nil {
			t.Fatal(err)
		}
		info, err := b.Stat(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if info.Name != "theirs.mp3" || info.ChunkSize != 100_000 || info.Length != int64(len(data)) ||
			info.Metadata.Lookup("video_fid").StringValue() != "x" {
			t.Errorf("stat = %+v", info)
		}
		if got := readAll(t, b, id, 0); !bytes.Equal(got, data) {
			t.Error("read different bytes")
		}
		if got := readAll(t, b, id, 250_001); !bytes.Equal(got, data[250_001:]) {
			t.Error("read different bytes from an offset")
		}
		found, err := b.Find(ctx, bson.M{"metadata.video_fid": "x"})
		if err != nil || len(found) != 1 || found[0].ID != id {
			t.Errorf("find by metadata = %+v, %v", found, err)
		}
	})
}

// failingReader yields n bytes then fails (or cancels ctx and keeps going).
type failingReader struct {
	r      io.Reader
	n      int
	err    error
	cancel context.CancelFunc
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		if f.cancel != nil {
			f.cancel()
			return f.r.Read(p)
		}
		return 0, f.err
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

func TestUploadFailuresLeaveNothing(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	for _, withID := range []bool{false, true} {
		t.Run(fmt.Sprintf("reader error, given id %v", withID), func(t *testing.T) {
			t.Parallel()
			b, db := newBucket(t)
			var opt UploadOptions
			if withID {
				opt.ID = bson.NewObjectID()
			}
			r := &failingReader{r: bytes.NewReader(content(20<<20, 3)), n: 9 << 20, err: errBoom}
			_, err := b.Upload(testCtx(t), "f", r, nil, opt)
			if !errors.Is(err, errBoom) {
				t.Fatalf("err = %v, want the reader's", err)
			}
			assertEmpty(t, db)
		})
	}
	// A truncated request body reports io.ErrUnexpectedEOF: that must fail
	// the upload, not end the file early.
	t.Run("reader truncated", func(t *testing.T) {
		t.Parallel()
		b, db := newBucket(t)
		r := &failingReader{r: bytes.NewReader(content(1<<20, 6)), n: 100 << 10, err: io.ErrUnexpectedEOF}
		if _, err := b.Upload(testCtx(t), "f", r, nil, UploadOptions{}); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want io.ErrUnexpectedEOF", err)
		}
		assertEmpty(t, db)
	})
	t.Run("context cancelled", func(t *testing.T) {
		t.Parallel()
		b, db := newBucket(t)
		ctx, cancel := context.WithCancel(testCtx(t))
		r := &failingReader{r: bytes.NewReader(content(20<<20, 4)), n: 9 << 20, cancel: cancel}
		_, err := b.Upload(ctx, "f", r, nil, UploadOptions{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		assertEmpty(t, db)
	})
	t.Run("too large", func(t *testing.T) {
		t.Parallel()
		b, db := newBucket(t)
		data := content(6<<20, 5)
		_, err := b.Upload(testCtx(t), "f", bytes.NewReader(data), nil, UploadOptions{MaxBytes: 5 << 20})
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("err = %v, want ErrTooLarge", err)
		}
		assertEmpty(t, db)
		info, err := b.Upload(testCtx(t), "f", bytes.NewReader(data[:5<<20]), nil, UploadOptions{MaxBytes: 5 << 20})
		if err != nil || info.Length != 5<<20 {
			t.Fatalf("upload of exactly MaxBytes: %+v, %v", info, err)
		}
	})
}

func TestUploadWithID(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	id := bson.NewObjectID()
	// A writer that died left chunks of id without a files document.
	var strays []any
	for n := range 6 {
		strays = append(strays, bson.D{
			{Key: "_id", Value: bson.NewObjectID()}, {Key: "files_id", Value: id},
			{Key: "n", Value: int32(n)}, {Key: "data", Value: bson.Binary{Data: []byte("stale")}},
		})
	}
	if _, err := db.Collection("fs.chunks").InsertMany(ctx, strays); err != nil {
		t.Fatal(err)
	}
	data := content(2*cs+1, 6)
	info, err := b.Upload(ctx, "a.mp3", bytes.NewReader(data), nil, UploadOptions{ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != id {
		t.Errorf("id = %s, want %s", info.ID.Hex(), id.Hex())
	}
	if got := readAll(t, b, id, 0); !bytes.Equal(got, data) {
		t.Error("read different bytes")
	}
	if f, c := count(t, db); f != 1 || c != 3 {
		t.Errorf("%d files, %d chunks; want 1, 3", f, c)
	}

	_, err = b.Upload(ctx, "b.mp3", bytes.NewReader(content(cs, 7)), nil, UploadOptions{ID: id})
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second upload with the same id: err = %v, want ErrExists", err)
	}
	if got := readAll(t, b, id, 0); !bytes.Equal(got, data) {
		t.Error("the first file changed")
	}
	if f, c := count(t, db); f != 1 || c != 3 {
		t.Errorf("%d files, %d chunks; want 1, 3", f, c)
	}
}

// Concurrent uploads with one ID (a redelivered message while the first
// converter still runs): at most one wins, and the file is never a mix.
func TestConcurrentUploadsSameID(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	id := bson.NewObjectID()
	datas := [][]byte{content(3<<20, 10), content(3<<20, 11), content(3<<20, 12)}
	errs := make([]error, len(datas))
	var wg sync.WaitGroup
	for i := range datas {
		wg.Go(func() {
			_, errs[i] = b.Upload(testCtx(t), "x", bytes.NewReader(datas[i]), nil, UploadOptions{ID: id})
		})
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		switch {
		case err == nil && won >= 0:
			t.Fatalf("uploads %d and %d both succeeded", won, i)
		case err == nil:
			won = i
		case !errors.Is(err, ErrExists) && !errors.Is(err, ErrConflict):
			t.Errorf("upload %d: %v, want ErrExists or ErrConflict", i, err)
		}
	}
	t.Logf("results: %v", errs)
	if won < 0 {
		if f, c := count(t, db); f != 0 || c != 0 {
			t.Errorf("all failed but %d files, %d chunks left", f, c)
		}
		return
	}
	if got := readAll(t, b, id, 0); !bytes.Equal(got, datas[won]) {
		t.Errorf("the file is not upload %d's content", won)
	}
	if f, c := count(t, db); f != 1 || c != int64((3<<20+cs-1)/cs) {
		t.Errorf("%d files, %d chunks left", f, c)
	}
}

func TestDeleteAndNotFound(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	info, err := b.Upload(ctx, "f", bytes.NewReader(content(2*cs, 8)), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if f, c := count(t, db); f != 0 || c != 0 {
		t.Errorf("after delete: %d files, %d chunks", f, c)
	}
	if err := b.Delete(ctx, info.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete again: %v, want ErrNotFound", err)
	}
	if _, err := b.Stat(ctx, info.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("stat: %v, want ErrNotFound", err)
	}
	if _, _, err := b.Open(ctx, info.ID, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("open: %v, want ErrNotFound", err)
	}
	if found, err := b.Find(ctx, bson.M{"filename": "f"}); err != nil || len(found) != 0 {
		t.Errorf("find = %v, %v; want none", found, err)
	}
}

func TestCorruptFile(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	info, err := b.Upload(ctx, "f", bytes.NewReader(content(4*cs, 9)), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("fs.chunks").DeleteOne(ctx, bson.D{{Key: "files_id", Value: info.ID}, {Key: "n", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 2*cs + 1} {
		rc, _, err := b.Open(ctx, info.ID, off)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("offset %d: read %d bytes, err = %v; want ErrCorrupt", off, len(got), err)
		}
		if off == 0 && len(got) != 2*cs {
			t.Errorf("read %d bytes before the missing chunk, want %d", len(got), 2*cs)
		}
	}
	// The last chunk missing.
	if _, err := db.Collection("fs.chunks").DeleteOne(ctx, bson.D{{Key: "files_id", Value: info.ID}, {Key: "n", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	rc, _, err := b.Open(ctx, info.ID, 3*cs)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrCorrupt) {
		t.Errorf("missing last chunk: err = %v, want ErrCorrupt", err)
	}
}

// Chunks stored out of order (as after deletes let the server reuse space)
// are still read in order.
func TestChunksOutOfOrder(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	const size = 20 * 1000
	data := content(70*size+5, 13)
	id := bson.NewObjectID()
	nChunks := (len(data) + size - 1) / size
	for _, n := range rand.New(rand.NewPCG(1, 2)).Perm(nChunks) {
		doc := bson.D{
			{Key: "_id", Value: bson.NewObjectID()}, {Key: "files_id", Value: id}, {Key: "n", Value: int32(n)},
			{Key: "data", Value: bson.Binary{Data: data[n*size : min((n+1)*size, len(data))]}},
		}
		if _, err := db.Collection("fs.chunks").InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	files := bson.D{
		{Key: "_id", Value: id}, {Key: "length", Value: int32(len(data))}, {Key: "chunkSize", Value: int32(size)},
		{Key: "uploadDate", Value: bson.NewDateTimeFromTime(time.Now())}, {Key: "filename", Value: "py"},
	}
	if _, err := db.Collection("fs.files").InsertOne(ctx, files); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 33*size + 7} {
		if got := readAll(t, b, id, off); !bytes.Equal(got, data[off:]) {
			t.Errorf("offset %d: read %d bytes, differ", off, len(got))
		}
	}
}

// A file beyond what one FerretDB getMore can carry (250 chunks of 255 KiB
// exceed the 48 MB message limit) streams through Open.
func TestLargeFile(t *testing.T) {
	t.Parallel()
	b, _ := newBucket(t)
	ctx := testCtx(t)
	const size = 100 << 20
	data := content(size, 14)
	want := sha256.Sum256(data)
	t0 := time.Now()
	info, err := b.Upload(ctx, "big.mp4", bytes.NewReader(data), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data = nil
	t.Logf("upload: %v", time.Since(t0))
	t0 = time.Now()
	rc, _, err := b.Open(ctx, info.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil || n != size || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("read %d bytes, err %v, sha256 match %v", n, err, bytes.Equal(h.Sum(nil), want[:]))
	}
	t.Logf("download: %v", time.Since(t0))
	// The driver's own download stream fails on this file under FerretDB:
	// see BenchmarkDriverDownloadLarge.
}

// downReader yields n bytes, then cuts the server off and fails.
type downReader struct {
	r    io.Reader
	n    int
	down func()
}

func (d *downReader) Read(p []byte) (int, error) {
	if d.n <= 0 {
		d.down()
		return 0, errors.New("client went away")
	}
	k, err := d.r.Read(p[:min(len(p), d.n)])
	d.n -= k
	return k, err
}

// When the server is unreachable as the upload fails (the likely reason it
// failed), the chunks already written are removed once it is back.
func TestFailedUploadCleanedUpAfterOutage(t *testing.T) {
	t.Parallel()
	direct := testenv.Mongo(t)
	u, err := url.Parse(testenv.Getenv(t, "MONGODB_URI"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	b := clientBucket(t, direct.Name(), options.Client().ApplyURI("mongodb://"+proxy.Addr()+"/?directConnection=true").
		SetServerSelectionTimeout(2*time.Second))
	r := &downReader{r: bytes.NewReader(content(12<<20, 9)), n: 9 << 20, down: proxy.Down}
	if _, err := b.Upload(testCtx(t), "f", r, nil, UploadOptions{}); err == nil {
		t.Fatal("upload succeeded")
	}
	if _, chunks := count(t, direct); chunks == 0 {
		t.Fatal("no chunks were written before the outage: the test proves nothing")
	}
	proxy.Up()
	var f, c int64
	if !testenv.Poll(time.Minute, func() bool {
		f, c = count(t, direct)
		return f == 0 && c == 0
	}) {
		t.Fatalf("%d files, %d chunks still there a minute after the server came back", f, c)
	}
}

// SetMetadataIfAbsent gives a file a metadata field it lacks, whatever shape
// its files document has (pymongo's fs.put writes no metadata at all), and
// never overwrites one that is there.
func TestSetMetadataIfAbsent(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	cases := []struct {
		name    string
		meta    any // the files document's metadata; absent when omitted
		omit    bool
		wantSet bool
		want    bson.M // metadata afterwards
	}{
		{name: "no metadata field (pymongo fs.put)", omit: true, wantSet: true, want: bson.M{"owner": "a@example.com"}},
		{name: "metadata null", meta: nil, wantSet: true, want: bson.M{"owner": "a@example.com"}},
		{name: "metadata without the key", meta: bson.M{"filename": "x.mp3"}, wantSet: true,
			want: bson.M{"filename": "x.mp3", "owner": "a@example.com"}},
		{name: "key null", meta: bson.M{"owner": nil}, wantSet: true, want: bson.M{"owner": "a@example.com"}},
		{name: "key set: kept", meta: bson.M{"owner": "c@example.com", "video_fid": "v"}, wantSet: false,
			want: bson.M{"owner": "c@example.com", "video_fid": "v"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := bson.NewObjectID()
			doc := bson.D{{Key: "_id", Value: id}, {Key: "chunkSize", Value: int32(cs)}, {Key: "length", Value: int64(0)},
				{Key: "uploadDate", Value: time.Now()}}
			if !c.omit {
				doc = append(doc, bson.E{Key: "metadata", Value: c.meta})
			}
			if _, err := db.Collection("fs.files").InsertOne(ctx, doc); err != nil {
				t.Fatal(err)
			}
			set, err := b.SetMetadataIfAbsent(ctx, id, "owner", "a@example.com")
			if err != nil || set != c.wantSet {
				t.Fatalf("SetMetadataIfAbsent = %v, %v; want %v, nil", set, err, c.wantSet)
			}
			// Again: there now, so nothing is written.
			if set, err := b.SetMetadataIfAbsent(ctx, id, "owner", "b@example.com"); err != nil || set {
				t.Fatalf("SetMetadataIfAbsent again = %v, %v; want false, nil", set, err)
			}
			var got struct {
				Metadata bson.M `bson:"metadata"`
			}
			if err := db.Collection("fs.files").FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Metadata, c.want) { // not Sprint: bson.M prints in map order
				t.Errorf("metadata = %v, want %v", got.Metadata, c.want)
			}
		})
	}
	if _, err := b.SetMetadataIfAbsent(ctx, bson.NewObjectID(), "owner", "a@example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: %v, want ErrNotFound", err)
	}
	for _, key := range []string{"", "a.b", "$set"} {
		if _, err := b.SetMetadataIfAbsent(ctx, bson.NewObjectID(), key, "x"); err == nil {
			t.Errorf("key %q accepted", key)
		}
	}
}
