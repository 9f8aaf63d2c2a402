package gridfs

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// A partial file written in pieces cut anywhere, by readers that fail
// half-way, is the same file as one uploaded at once; every byte Append
// counted is in the state a later request reads.
func TestPartialFile(t *testing.T) {
	t.Parallel()
	b, _ := newBucket(t)
	ctx := testCtx(t)
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	for _, size := range []int{1, cs - 1, cs, 3*cs + 100, 20*cs + 7} {
		data := content(size, uint64(size))
		p, err := b.CreatePartial(ctx, Partial{Owner: "u", Name: "v.mp4", Size: int64(size),
			Metadata: mustRaw(t, bson.D{{Key: "owner", Value: "u"}}), Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Stat(ctx, p.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a partial file is visible as a file before it is complete: %v", err)
		}
		for p.Offset < p.Size {
			cut := 1 + rng.IntN(int(p.Size-p.Offset))
			// The client sends cut bytes, then the connection breaks.
			src := &failingReader{r: bytes.NewReader(data[p.Offset:]), n: cut, err: io.ErrUnexpectedEOF}
			before := p.Offset
			n, err := b.Append(ctx, &p, src, time.Now().Add(time.Hour))
			if n != int64(cut) {
				t.Fatalf("size %d: append at %d counted %d of the %d bytes read (err %v)", size, before, n, cut, err)
			}
			if before+n < p.Size && err == nil {
				t.Fatalf("size %d: a broken read was not reported", size)
			}
			// A later request starts from what is saved.
			saved, err := b.GetPartial(ctx, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			if saved.Offset != before+n || !bytes.Equal(saved.Tail, p.Tail) {
				t.Fatalf("size %d: saved offset %d (tail %d), want %d", size, saved.Offset, len(saved.Tail), before+n)
			}
			p = saved
		}
		info, err := b.Complete(ctx, &p)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.MarkDone(ctx, &p); err != nil {
			t.Fatal(err)
		}
		if info.Length != int64(size) || !bytes.Equal(readAll(t, b, p.ID, 0), data) {
			t.Fatalf("size %d: the completed file differs from what was sent", size)
		}
		if done, err := b.GetPartial(ctx, p.ID); err != nil || !done.Done || done.Offset != p.Size {
			t.Fatalf("size %d: state after completion %+v, %v", size, done, err)
		}
	}
	if _, err := b.Append(ctx, &Partial{ID: bson.NewObjectID(), Size: 10, Offset: 10}, bytes.NewReader([]byte("x")), time.Now()); !errors.Is(err, ErrBadOffset) {
		t.Errorf("append past the end: %v, want ErrBadOffset", err)
	}
	if _, err := b.GetPartial(ctx, bson.NewObjectID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("a partial file never created: %v, want ErrNotFound", err)
	}
}

// A completed file given back (its job could not be queued) takes its last
// bytes back; sent again, they complete the same file. Chunks a writer that
// died left behind are replaced.
func TestPartialReopenAndStrays(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	for _, size := range []int{cs / 2, 4 * cs, 4*cs + 9} {
		data := content(size, 3)
		p, err := b.CreatePartial(ctx, Partial{Owner: "u", Name: "v", Size: int64(size), Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		// A writer that died after inserting its chunks, before saving the
		// state: the chunks are there, the offset is not.
		ghost := p
		if err := b.putChunks(ctx, &ghost, 0, content(size-size%cs, 99)); err != nil && size >= cs {
			t.Fatal(err)
		}
		if _, err := b.Append(ctx, &p, bytes.NewReader(data), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Complete(ctx, &p); err != nil {
			t.Fatal(err)
		}
		if err := b.Reopen(ctx, &p); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Stat(ctx, p.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("size %d: a reopened file is still visible: %v", size, err)
		}
		saved, err := b.GetPartial(ctx, p.ID)
		if err != nil || saved.Offset >= saved.Size || saved.Done {
			t.Fatalf("size %d: reopened state %d of %d done=%v, %v", size, saved.Offset, saved.Size, saved.Done, err)
		}
		if _, err := b.Append(ctx, &saved, bytes.NewReader(data[saved.Offset:]), time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Complete(ctx, &saved); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, b, p.ID, 0); !bytes.Equal(got, data) {
			t.Fatalf("size %d: the file completed again differs from what was sent", size)
		}
		if n, err := db.Collection("fs.chunks").CountDocuments(ctx, bson.D{{Key: "files_id", Value: p.ID}}); err != nil || n != int64((size+cs-1)/cs) {
			t.Fatalf("size %d: %d chunks (%v), want %d: strays were left", size, n, err, (size+cs-1)/cs)
		}
		if err := b.Delete(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		if err := b.Abort(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
		assertEmpty(t, db)
	}
}

// Aborting or expiring a partial file removes its chunks and state, but
// never a file it completed; the sweep also removes stale locks.
// OpenPartials counts what is still open.
func TestPartialAbortAndExpiry(t *testing.T) {
	t.Parallel()
	b, db := newBucket(t)
	ctx := testCtx(t)
	now := time.Now()
	mk := func(owner string, size int, expires time.Time, sent int) Partial {
		t.Helper()
		p, err := b.CreatePartial(ctx, Partial{Owner: owner, Name: "v", Size: int64(size), Expires: expires})
		if err != nil {
			t.Fatal(err)
		}
		if sent > 0 {
			if _, err := b.Append(ctx, &p, bytes.NewReader(content(sent, 1)), expires); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	stale := mk("a", 5*cs, now.Add(-time.Minute), 3*cs+5)
	fresh := mk("a", 2*cs, now.Add(time.Hour), cs)
	_ = mk("b", 7, now.Add(time.Hour), 0)
	whole := mk("a", cs+1, now.Add(-time.Minute), cs+1)
	if _, err := b.Complete(ctx, &whole); err != nil {
		t.Fatal(err)
	}
	if err := b.MarkDone(ctx, &whole); err != nil {
		t.Fatal(err)
	}

	if n, size, err := b.OpenPartials(ctx, "a"); err != nil || n != 2 || size != 7*cs {
		t.Fatalf("open partials of a: %d, %d bytes, %v; want 2, %d", n, size, err, 7*cs)
	}
	// A lock left by a writer that died two hours ago, and one in force.
	locks := db.Collection(PartialLocksCollection)
	if _, err := locks.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "dead"}, {Key: "owner", Value: "x"}, {Key: "until", Value: now.Add(-2 * time.Hour)}},
		bson.D{{Key: "_id", Value: "live"}, {Key: "owner", Value: "y"}, {Key: "until", Value: now.Add(time.Minute)}},
	}); err != nil {
		t.Fatal(err)
	}
	got, err := b.ExpirePartials(ctx, now, 0)
	if err != nil || got != 2 {
		t.Fatalf("expired %d, %v; want 2 (the stale one and the completed one's state)", got, err)
	}
	if n, err := locks.CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
		t.Errorf("after the sweep: %d locks (%v), want the one in force", n, err)
	}
	if _, err := b.GetPartial(ctx, stale.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the stale partial file is still there: %v", err)
	}
	if _, err := b.GetPartial(ctx, fresh.ID); err != nil {
		t.Errorf("the fresh partial file went: %v", err)
	}
	if !bytes.Equal(readAll(t, b, whole.ID, 0), content(cs+1, 1)) {
		t.Error("expiring a completed file's state touched the file")
	}
	if err := b.Abort(ctx, fresh.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, whole.ID); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, db)
}

func mustRaw(t *testing.T, doc bson.D) bson.Raw {
	t.Helper()
	raw, err := bson.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
