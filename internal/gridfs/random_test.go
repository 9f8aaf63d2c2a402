package gridfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/url"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"mp3converter/internal/testenv"
)

// clientBucket is a bucket in db (a fresh database of testenv.Mongo) seen
// through a client of its own, made with opts (a monitor, a proxy's
// address); the client is disconnected when the test ends.
func clientBucket(t *testing.T, db string, opts *options.ClientOptions) *Bucket {
	t.Helper()
	client, err := mongo.Connect(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	b, err := NewBucket(client.Database(db))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// countedBucket is a bucket in a fresh database whose client counts the
// chunks the server sends (see chunkCounter).
func countedBucket(t *testing.T) (*Bucket, *chunkCounter) {
	t.Helper()
	counter := &chunkCounter{}
	b := clientBucket(t, testenv.Mongo(t).Name(),
		options.Client().ApplyURI(testenv.Getenv(t, "MONGODB_URI")).SetMonitor(counter.monitor()))
	return b, counter
}

// RandomAccess returns the file's bytes wherever it is read, fetches a
// chunk only when it is needed (or read ahead by a sequential reader), and
// holds no more than CacheChunks of them.
func TestRandomAccess(t *testing.T) {
	t.Parallel()
	b, counter := countedBucket(t)
	ctx := testCtx(t)
	data := content(60*cs+123, 11) // 61 chunks
	info, err := b.Upload(ctx, "f", bytes.NewReader(data), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("sequential reads every chunk once", func(t *testing.T) {
		ra, err := b.OpenRandom(ctx, info.ID, RandomOptions{CacheChunks: 16})
		if err != nil {
			t.Fatal(err)
		}
		defer ra.Close()
		before := counter.docs.Load()
		got, err := io.ReadAll(ra.NewReader())
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, %v; want the file's %d", len(got), err, len(data))
		}
		if n := counter.docs.Load() - before; n != 61 || ra.Fetched() != int64(len(data)) {
			t.Errorf("the server sent %d chunks (%d bytes fetched); want 61 (%d)", n, ra.Fetched(), len(data))
		}
		if q := ra.Queries(); q > 3 {
			t.Errorf("%d queries for 61 chunks read in sequence; want one stream (after a fetch or two)", q)
		}
		ra.mu.Lock()
		held := len(ra.chunks)
		ra.mu.Unlock()
		if held > 16 {
			t.Errorf("%d chunks held, want ≤ CacheChunks 16", held)
		}
	})

	t.Run("seeks fetch only the chunks read", func(t *testing.T) {
		// MaxGap 1: the costs of a server with an index on n (MongoDB).
		ra, err := b.OpenRandom(ctx, info.ID, RandomOptions{MaxGap: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer ra.Close()
		before := counter.docs.Load()
		r := ra.NewReader()
		// A reader of one track: a few bytes every few chunks, as ffmpeg
		// reads the audio of a coarsely interleaved file.
		for _, off := range []int64{55*cs + 10, 3 * cs, 10*cs + 100, 20 * cs, 30*cs - 50, 45 * cs} {
			if _, err := r.Seek(off, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 100)
			if _, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf, data[off:off+100]) {
				t.Fatalf("at %d: %v or wrong bytes", off, err)
			}
		}
		// 30*cs-50 spans chunks 29 and 30: 7 chunks in all.
		if n := counter.docs.Load() - before; n != 7 {
			t.Errorf("the server sent %d chunks, want the 7 read", n)
		}
		// Read again: from the cache.
		before = counter.docs.Load()
		buf := make([]byte, 100)
		if _, err := ra.ReadAt(buf, 10*cs+100); err != nil || !bytes.Equal(buf, data[10*cs+100:10*cs+200]) {
			t.Fatalf("ReadAt: %v or wrong bytes", err)
		}
		if n := counter.docs.Load() - before; n != 0 {
			t.Errorf("a cached chunk fetched again (%d chunks sent)", n)
		}
	})

	t.Run("random reads return the file", func(t *testing.T) {
		ra, err := b.OpenRandom(ctx, info.ID, RandomOptions{CacheChunks: 8, Ahead: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer ra.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		for range 40 {
			off := rng.Int64N(int64(len(data)))
			n := min(rng.Int64N(3*cs), int64(len(data))-off)
			buf := make([]byte, n)
			if _, err := ra.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
			}
			if !bytes.Equal(buf, data[off:off+n]) {
				t.Fatalf("ReadAt(%d, %d): wrong bytes", off, n)
			}
		}
		if _, err := ra.ReadAt(make([]byte, 10), int64(len(data))); !errors.Is(err, io.EOF) {
			t.Errorf("ReadAt at the end: %v, want io.EOF", err)
		}
	})
}

// A missing chunk is ErrCorrupt, for the reader and in Err.
func TestRandomAccessCorrupt(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	info, err := b.Upload(ctx, "f", bytes.NewReader(content(6*cs, 12)), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("fs.chunks").DeleteOne(ctx, bson.D{{Key: "files_id", Value: info.ID}, {Key: "n", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	ra, err := b.OpenRandom(ctx, info.ID, RandomOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	got, err := io.ReadAll(ra.NewReader())
	if !errors.Is(err, ErrCorrupt) || len(got) != 3*cs {
		t.Errorf("read %d bytes, %v; want the 3 chunks before the missing one, then ErrCorrupt", len(got), err)
	}
	if !errors.Is(ra.Err(), ErrCorrupt) {
		t.Errorf("Err() = %v, want ErrCorrupt", ra.Err())
	}
}

// A server that goes away fails the read (it does not hang, nor return
// short data as the end of the file); when it is back, a new read works.
func TestRandomAccessServerDown(t *testing.T) {
	t.Parallel()
	direct := testenv.Mongo(t)
	u, err := url.Parse(testenv.Getenv(t, "MONGODB_URI"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	b := clientBucket(t, direct.Name(), options.Client().ApplyURI("mongodb://"+proxy.Addr()+"/?directConnection=true").
		SetServerSelectionTimeout(2*time.Second).SetTimeout(5*time.Second))
	ctx := testCtx(t)
	data := content(20*cs, 13)
	info, err := b.Upload(ctx, "f", bytes.NewReader(data), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ra, err := b.OpenRandom(ctx, info.ID, RandomOptions{CacheChunks: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	r := ra.NewReader()
	if _, err := io.ReadFull(r, make([]byte, 2*cs)); err != nil {
		t.Fatal(err)
	}
	proxy.Down()
	_, err = io.ReadAll(r)
	if err == nil || ra.Err() == nil {
		t.Fatalf("read with the server down: %v (Err %v); want an error", err, ra.Err())
	}
	proxy.Up()
	buf := make([]byte, 100)
	if !testenv.Poll(30*time.Second, func() bool {
		_, err := ra.ReadAt(buf, 15*cs)
		return err == nil
	}) {
		t.Fatal("reads still fail with the server back")
	}
	if !bytes.Equal(buf, data[15*cs:15*cs+100]) {
		t.Error("wrong bytes after the server came back")
	}
}

// Two sequential readers far apart, as ffmpeg leaves them when it seeks over
// HTTP (the request it left still reads ahead while the new one starts):
// both get the file's bytes, and they do not take the one stream from each
// other in turn (which once made a conversion stall, every move restarting
// the stream before it delivered a chunk). The newer reader keeps the
// stream; the older one fetches its chunks on its own.
func TestRandomAccessTwoSequentialReaders(t *testing.T) {
	t.Parallel()
	b, _ := newBucket(t)
	ctx := testCtx(t)
	data := content(60*cs+7, 14)
	info, err := b.Upload(ctx, "f", bytes.NewReader(data), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ra, err := b.OpenRandom(ctx, info.ID, RandomOptions{MaxGap: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	// A stalled pair restarts the stream without end: stop it there.
	const maxQueries = 200
	watch, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		for watch.Err() == nil && ra.Queries() <= maxQueries {
			time.Sleep(10 * time.Millisecond)
		}
		if watch.Err() == nil {
			_ = ra.Close()
		}
	}()
	read := func(from, to int64) <-chan error {
		done := make(chan error, 1)
		r := ra.NewReader()
		go func() {
			if _, err := r.Seek(from, io.SeekStart); err != nil {
				done <- err
				return
			}
			got := make([]byte, to-from)
			_, err := io.ReadFull(r, got)
			if err == nil && !bytes.Equal(got, data[from:to]) {
				err = errors.New("wrong bytes")
			}
			done <- err
		}()
		return done
	}
	old, recent := read(0, 30*cs), read(30*cs, int64(len(data)))
	for name, done := range map[string]<-chan error{"old": old, "recent": recent} {
		if err := <-done; err != nil {
			t.Errorf("the %s reader: %v (%d queries sent)", name, err, ra.Queries())
		}
	}
	if q := ra.Queries(); q > maxQueries {
		t.Errorf("%d queries for 61 chunks: the readers took the stream from each other", q)
	}
}

// A newer reader that stops does not keep the stream from an older one
// that goes on: the older reads at stream speed, not a query per chunk.
func TestRandomAccessStreamOfAStoppedReader(t *testing.T) {
	t.Parallel()
	b, _ := newBucket(t)
	ctx := testCtx(t)
	data := content(60*cs, 15)
	info, err := b.Upload(ctx, "f", bytes.NewReader(data), nil, UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ra, err := b.OpenRandom(ctx, info.ID, RandomOptions{MaxGap: 1, CacheChunks: 8, Ahead: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	old := ra.NewReader()
	if _, err := io.ReadFull(old, make([]byte, 3*cs)); err != nil {
		t.Fatal(err)
	}
	// The newer reader reads three chunks far ahead in sequence, and stops.
	if _, err := ra.ReadAt(make([]byte, 3*cs), 40*cs); err != nil {
		t.Fatal(err)
	}
	before := ra.Queries()
	got := make([]byte, 30*cs)
	if _, err := io.ReadFull(old, got); err != nil || !bytes.Equal(got, data[3*cs:33*cs]) {
		t.Fatalf("the older reader: %v or wrong bytes", err)
	}
	if q := ra.Queries() - before; q > 10 {
		t.Errorf("%d queries for 30 chunks read in sequence: the older reader fetched them one by one", q)
	}
}
