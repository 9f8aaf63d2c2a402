package gridfs

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/testenv"
)

// gatedReader returns the first n bytes of r, then blocks until gate is
// closed, then returns the rest.
type gatedReader struct {
	r      io.Reader
	n      int
	gate   chan struct{}
	passed chan struct{} // closed when the first n bytes were read
	once   sync.Once
	read   int
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if g.read >= g.n {
		g.once.Do(func() { close(g.passed) })
		<-g.gate
		return g.r.Read(p)
	}
	if len(p) > g.n-g.read {
		p = p[:g.n-g.read]
	}
	k, err := g.r.Read(p)
	g.read += k
	return k, err
}

// A second upload of a file ID while the first is still writing it (two
// converters on one video, one of them past its lease) is refused at once
// with ErrConflict, and touches none of the first one's chunks: the first
// ends as a whole file. (Before, the second removed the first's chunks as
// strays and wrote its own file; the first then failed, or, between its
// last check and its files document, ended as a file with chunks missing.)
func TestSecondWriterOfAnIDIsRefused(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	id := bson.NewObjectID()
	first := content(6<<20, 21) // more than one insert batch: chunks are written before the gate
	g := &gatedReader{r: bytes.NewReader(first), n: 5 << 20, gate: make(chan struct{}), passed: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := b.Upload(ctx, "first.mp3", g, bson.M{"n": 1}, UploadOptions{ID: id})
		done <- err
	}()
	<-g.passed
	var written int64
	testenv.Eventually(t, 30*time.Second, "the first upload to write chunks", func() bool {
		n, err := db.Collection("fs.chunks").CountDocuments(ctx, bson.M{"files_id": id})
		if err != nil {
			t.Fatal(err)
		}
		written = n
		return written > 0
	})

	_, err := b.Upload(ctx, "second.mp3", bytes.NewReader(content(1<<20, 22)), bson.M{"n": 2}, UploadOptions{ID: id})
	if !errors.Is(err, ErrConflict) {
		t.Errorf("second upload of the same id while the first writes it: %v, want ErrConflict", err)
	}
	if n, err := db.Collection("fs.chunks").CountDocuments(ctx, bson.M{"files_id": id}); err != nil || n != written {
		t.Errorf("after the second upload: %d chunks of the id (%v), want the first's %d", n, err, written)
	}

	close(g.gate)
	if err := <-done; err != nil {
		t.Fatalf("first upload: %v", err)
	}
	if got := readAll(t, b, id, 0); !bytes.Equal(got, first) {
		t.Errorf("the file is not the first upload's %d bytes (%d read)", len(first), len(got))
	}
	if f, c := count(t, db); f != 1 || c != int64((len(first)+cs-1)/cs) {
		t.Errorf("%d files, %d chunks; want 1 and %d", f, c, (len(first)+cs-1)/cs)
	}
	// Once it is done, the ID is free for nobody: the file exists.
	if _, err := b.Upload(ctx, "third.mp3", bytes.NewReader(content(10, 23)), nil, UploadOptions{ID: id}); !errors.Is(err, ErrExists) {
		t.Errorf("upload after the first finished: %v, want ErrExists", err)
	}
	if n, err := db.Collection(uploadsCollection).CountDocuments(ctx, bson.M{}); err != nil || n != 0 {
		t.Errorf("%d writer claims left (%v), want none", n, err)
	}
}

// A writer's claim on an ID that has expired (the writer died without
// removing it) does not block the next upload, which also removes the
// dead writer's chunks; an unexpired one does, and touches nothing.
func TestDeadWritersClaimExpires(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name  string
		until time.Duration // of the claim, from now
		want  error
	}{
		{"expired", -time.Second, nil},
		{"live", time.Minute, ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := bson.NewObjectID()
			if _, err := db.Collection(uploadsCollection).InsertOne(ctx, bson.D{{Key: "_id", Value: id},
				{Key: "writer", Value: "dead-writer"}, {Key: "until", Value: time.Now().Add(tc.until)}}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.Collection("fs.chunks").InsertOne(ctx, bson.D{{Key: "_id", Value: bson.NewObjectID()},
				{Key: "files_id", Value: id}, {Key: "n", Value: int32(0)}, {Key: "data", Value: bson.Binary{Data: []byte("stale")}}}); err != nil {
				t.Fatal(err)
			}
			data := content(cs+10, 24)
			_, err := b.Upload(ctx, "x.mp3", bytes.NewReader(data), nil, UploadOptions{ID: id})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("upload: %v, want %v", err, tc.want)
			}
			chunks, err := db.Collection("fs.chunks").CountDocuments(ctx, bson.M{"files_id": id})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if got := readAll(t, b, id, 0); !bytes.Equal(got, data) || chunks != 2 {
					t.Errorf("read %d bytes, %d chunks; want the upload's %d bytes in 2 chunks", len(got), chunks, len(data))
				}
			} else if chunks != 1 {
				t.Errorf("%d chunks of the id, want the live writer's 1", chunks)
			}
		})
	}
}

// The claim is renewed while an upload runs longer than it lasts.
func TestWriterClaimRenewed(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := context.Background()
	id := bson.NewObjectID()
	data := content(cs, 25)
	const ttl = 900 * time.Millisecond
	g := &gatedReader{r: bytes.NewReader(data), n: 10, gate: make(chan struct{}), passed: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := b.Upload(ctx, "slow.mp3", g, nil, UploadOptions{ID: id, ClaimTTL: ttl})
		done <- err
	}()
	<-g.passed
	time.Sleep(ttl + ttl/2) // scenario, not evidence: the upload outlives its claim's TTL, which only renewal keeps alive
	var claim struct {
		Until time.Time `bson:"until"`
	}
	if err := db.Collection(uploadsCollection).FindOne(ctx, bson.M{"_id": id}).Decode(&claim); err != nil {
		t.Fatalf("the claim of a running upload: %v", err)
	}
	if !claim.Until.After(time.Now()) {
		t.Errorf("the claim of a running upload expired at %s", claim.Until)
	}
	if _, err := b.Upload(ctx, "other.mp3", bytes.NewReader(data), nil, UploadOptions{ID: id}); !errors.Is(err, ErrConflict) {
		t.Errorf("second upload: %v, want ErrConflict", err)
	}
	close(g.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A caller that knows a writer is gone (it took over that writer's lease
// on the file) names it in Supersede: that writer's claim is broken at
// once, unexpired as it is, and its chunks removed. The claim bears the
// caller's Writer name while the upload runs.
func TestSupersededWritersClaimIsBroken(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	id := bson.NewObjectID()
	claims := db.Collection(uploadsCollection)
	if _, err := claims.InsertOne(ctx, bson.D{{Key: "_id", Value: id},
		{Key: "writer", Value: "gone"}, {Key: "until", Value: time.Now().Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Collection("fs.chunks").InsertOne(ctx, bson.D{{Key: "_id", Value: bson.NewObjectID()},
		{Key: "files_id", Value: id}, {Key: "n", Value: int32(3)}, {Key: "data", Value: bson.Binary{Data: []byte("stale")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Upload(ctx, "x.mp3", bytes.NewReader(content(10, 26)), nil, UploadOptions{ID: id, Supersede: "someone-else"}); !errors.Is(err, ErrConflict) {
		t.Fatalf("upload superseding another writer than the claim's: %v, want ErrConflict", err)
	}
	data := content(cs+10, 27)
	g := &gatedReader{r: bytes.NewReader(data), n: 10, gate: make(chan struct{}), passed: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := b.Upload(ctx, "x.mp3", g, nil, UploadOptions{ID: id, Writer: "me#1", Supersede: "gone"})
		done <- err
	}()
	<-g.passed
	var claim struct {
		Writer string `bson:"writer"`
	}
	if err := claims.FindOne(ctx, bson.M{"_id": id}).Decode(&claim); err != nil || claim.Writer != "me#1" {
		t.Errorf("claim while uploading: %+v, %v; want writer me#1", claim, err)
	}
	close(g.gate)
	if err := <-done; err != nil {
		t.Fatalf("upload superseding the claim's writer: %v", err)
	}
	if got := readAll(t, b, id, 0); !bytes.Equal(got, data) {
		t.Error("read different bytes")
	}
	if f, c := count(t, db); f != 1 || c != 2 {
		t.Errorf("%d files, %d chunks; want 1 and 2", f, c)
	}
}
