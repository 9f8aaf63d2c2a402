package gridfs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// partialsCollection holds the state of the files written over several
// requests (Partial). Like fs.uploads it is not part of the GridFS layout:
// other GridFS tools neither need nor see it, and they see a partial file
// only once Complete has written its files document.
const partialsCollection = "fs.partial"

// PartialLocksCollection holds the locks of the requests writing partial
// files (internal/tus's, leases of internal/lease). A lock a writer that
// died left behind is taken over by the next request of its file;
// ExpirePartials removes the ones nobody came back for.
const PartialLocksCollection = "fs.partial.locks"

// staleLocks: a lock expired this long ago is left by a writer that died.
const staleLocks = time.Hour

// Partial is a file written over several requests (a resumable upload) of
// a size known up front. Its whole chunks go into fs.chunks as they
// arrive; the bytes past the last whole chunk (Tail, less than a chunk)
// stay in its state document until more arrive, so that every byte the
// caller was told is stored is stored, wherever the client cuts. The files
// document is written only by Complete.
type Partial struct {
	ID        bson.ObjectID `bson:"_id"`
	Owner     string        `bson:"owner"`
	Name      string        `bson:"filename"`
	Size      int64         `bson:"size"`
	Offset    int64         `bson:"offset"`
	ChunkSize int32         `bson:"chunk_size"`
	// Metadata becomes the files document's metadata.
	Metadata bson.Raw `bson:"metadata,omitempty"`
	// Info is the caller's own description of the upload (a tus client's
	// metadata), kept as given.
	Info    map[string]string `bson:"info,omitempty"`
	Tail    []byte            `bson:"tail,omitempty"`
	Prefix  []byte            `bson:"prefix"` // chunk _id prefix, see chunkID
	Created time.Time         `bson:"created"`
	Expires time.Time         `bson:"expires"`
	// Done is set once the files document is written and the caller has
	// accepted the file (MarkDone); the state stays until it expires so
	// that a client that missed the last answer learns the file is whole.
	Done bool `bson:"done"`
}

func (p *Partial) chunkID(n int64) bson.ObjectID {
	var id bson.ObjectID
	copy(id[:9], p.Prefix)
	id[9], id[10], id[11] = byte(n>>16), byte(n>>8), byte(n)
	return id
}

func (b *Bucket) partials() *mongo.Collection {
	return b.files.Database().Collection(partialsCollection)
}

// CreatePartial records a new partial file of p.Size bytes, named p.Name,
// owned by p.Owner and expiring at p.Expires; the ID is fresh when zero.
func (b *Bucket) CreatePartial(ctx context.Context, p Partial) (Partial, error) {
	if p.ChunkSize == 0 {
		p.ChunkSize = DefaultChunkSize
	}
	if p.Size <= 0 || p.ChunkSize < 0 || (p.Size+int64(p.ChunkSize)-1)/int64(p.ChunkSize) > maxChunks {
		return Partial{}, fmt.Errorf("partial file of %d bytes: %w", p.Size, errBadOptions)
	}
	if p.ID.IsZero() {
		p.ID = bson.NewObjectID()
	}
	// The chunk _ids follow the ObjectID layout as Upload's do (time,
	// random, n): they sort with the time the upload began.
	p.Prefix = make([]byte, 9)
	copy(p.Prefix[:4], p.ID[:4])
	if _, err := rand.Read(p.Prefix[4:]); err != nil {
		return Partial{}, fmt.Errorf("chunk id: %w", err)
	}
	p.Offset, p.Tail, p.Done = 0, nil, false
	p.Created = time.Now().UTC().Truncate(time.Millisecond)
	p.Expires = p.Expires.UTC().Truncate(time.Millisecond)
	if _, err := b.partials().InsertOne(ctx, p); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return Partial{}, fmt.Errorf("partial file %s: %w", p.ID.Hex(), ErrExists)
		}
		return Partial{}, fmt.Errorf("record partial file: %w", err)
	}
	return p, nil
}

// GetPartial returns the state of a partial file; ErrNotFound when there
// is none (never created, aborted or expired).
func (b *Bucket) GetPartial(ctx context.Context, id bson.ObjectID) (Partial, error) {
	var p Partial
	err := b.partials().FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&p)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return Partial{}, fmt.Errorf("partial file %s: %w", id.Hex(), ErrNotFound)
	case err != nil:
		return Partial{}, fmt.Errorf("partial file %s: %w", id.Hex(), err)
	}
	return p, nil
}

// Append reads r to its end (or the file's) and stores it at p.Offset,
// moving p.Offset on and expiring p at expires. It holds one insert
// batch (≈4 MiB) in memory. What it read is stored, and counted in the
// returned n, even when r fails: the state is saved after every batch and
// once more with what came before r's error. The caller must be the only
// writer of p (a lock per file) and pass its latest state.
func (b *Bucket) Append(ctx context.Context, p *Partial, r io.Reader, expires time.Time) (n int64, err error) {
	if p.Done || p.Offset >= p.Size {
		return 0, fmt.Errorf("append to %s at %d of %d: %w", p.ID.Hex(), p.Offset, p.Size, ErrBadOffset)
	}
	size := int(p.ChunkSize)
	perBatch := max(1, batchBytes/size)
	buf := make([]byte, perBatch*size)
	r = io.LimitReader(r, p.Size-p.Offset)
	expires = expires.UTC().Truncate(time.Millisecond)
	for {
		// The batch starts at the chunk the tail belongs to.
		start := copy(buf, p.Tail)
		k, eof, rerr := fill(r, buf[start:])
		total := start + k
		whole := total / size
		first := (p.Offset - int64(start)) / int64(size)
		if whole > 0 {
			if err := b.putChunks(ctx, p, first, buf[:whole*size]); err != nil {
				return n, err
			}
		}
		tail := append([]byte(nil), buf[whole*size:total]...)
		if k > 0 || !p.Expires.Equal(expires) {
			set := bson.D{{Key: "offset", Value: p.Offset + int64(k)}, {Key: "tail", Value: tail}, {Key: "expires", Value: expires}}
			if _, err := b.partials().UpdateOne(ctx, bson.D{{Key: "_id", Value: p.ID}}, bson.D{{Key: "$set", Value: set}}); err != nil {
				return n, fmt.Errorf("save partial file %s: %w", p.ID.Hex(), err)
			}
			p.Offset += int64(k)
			p.Tail = tail
			p.Expires = expires
			n += int64(k)
		}
		if rerr != nil {
			return n, fmt.Errorf("read: %w", rerr)
		}
		if eof || p.Offset == p.Size {
			return n, nil
		}
	}
}

// putChunks inserts data as whole chunks first, first+1, … of p. A chunk
// already there is one a writer that died wrote before it could save the
// state: it is replaced.
func (b *Bucket) putChunks(ctx context.Context, p *Partial, first int64, data []byte) error {
	size := int(p.ChunkSize)
	docs := make([]any, 0, len(data)/size+1)
	ids := make([]bson.ObjectID, 0, cap(docs))
	for off := 0; off < len(data); off += size {
		n := first + int64(off/size)
		ids = append(ids, p.chunkID(n))
		docs = append(docs, chunkDoc(p.chunkID(n), p.ID, n, data[off:min(off+size, len(data))]))
	}
	_, err := b.chunks.InsertMany(ctx, docs)
	if mongo.IsDuplicateKeyError(err) {
		if _, err := b.chunks.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}}); err != nil {
			return fmt.Errorf("replace chunks of %s: %w", p.ID.Hex(), err)
		}
		_, err = b.chunks.InsertMany(ctx, docs)
	}
	if err != nil {
		return fmt.Errorf("insert chunks of %s: %w", p.ID.Hex(), err)
	}
	return nil
}

// Complete writes the last chunk and the files document of a partial file
// whose bytes are all in: from now on it is an ordinary file of the
// bucket. The state stays, not yet Done: the caller accepts the file with
// MarkDone or gives it back with Reopen.
func (b *Bucket) Complete(ctx context.Context, p *Partial) (FileInfo, error) {
	if p.Offset != p.Size {
		return FileInfo{}, fmt.Errorf("complete %s at %d of %d: %w", p.ID.Hex(), p.Offset, p.Size, ErrBadOffset)
	}
	if len(p.Tail) > 0 {
		if err := b.putChunks(ctx, p, p.Size/int64(p.ChunkSize), p.Tail); err != nil {
			return FileInfo{}, err
		}
	}
	info := FileInfo{ID: p.ID, Name: p.Name, Length: p.Size, ChunkSize: p.ChunkSize,
		UploadDate: time.Now().UTC().Truncate(time.Millisecond), Metadata: p.Metadata}
	if _, err := b.files.InsertOne(ctx, info.document()); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return FileInfo{}, fmt.Errorf("complete %s: %w", p.ID.Hex(), ErrExists)
		}
		return FileInfo{}, fmt.Errorf("complete %s: insert files document: %w", p.ID.Hex(), err)
	}
	return info, nil
}

// MarkDone records that a completed partial file was accepted; its tail
// (now a chunk) leaves the state.
func (b *Bucket) MarkDone(ctx context.Context, p *Partial) error {
	_, err := b.partials().UpdateOne(ctx, bson.D{{Key: "_id", Value: p.ID}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "done", Value: true}}}, {Key: "$unset", Value: bson.D{{Key: "tail", Value: ""}}}})
	if err != nil {
		return fmt.Errorf("mark %s done: %w", p.ID.Hex(), err)
	}
	p.Done, p.Tail = true, nil
	return nil
}

// Reopen undoes Complete: the files document goes, and the file takes
// back its last bytes (the tail, or the last whole chunk), so that the
// client sends them again and the file is completed again then. The
// chunks stay: the ones sent again replace them.
func (b *Bucket) Reopen(ctx context.Context, p *Partial) error {
	if _, err := b.files.DeleteOne(ctx, bson.D{{Key: "_id", Value: p.ID}}); err != nil {
		return fmt.Errorf("reopen %s: %w", p.ID.Hex(), err)
	}
	back := int64(len(p.Tail))
	if back == 0 {
		back = int64(p.ChunkSize) // the size is a multiple of the chunk size
	}
	set := bson.D{{Key: "offset", Value: p.Offset - back}, {Key: "done", Value: false}}
	if _, err := b.partials().UpdateOne(ctx, bson.D{{Key: "_id", Value: p.ID}},
		bson.D{{Key: "$set", Value: set}, {Key: "$unset", Value: bson.D{{Key: "tail", Value: ""}}}}); err != nil {
		return fmt.Errorf("reopen %s: %w", p.ID.Hex(), err)
	}
	p.Offset -= back
	p.Tail, p.Done = nil, false
	return nil
}

// Abort forgets a partial file. Its chunks are removed unless it became a
// file (its files document exists): a completed file is not the partial
// state's to remove.
func (b *Bucket) Abort(ctx context.Context, id bson.ObjectID) error {
	_, err := b.Stat(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		if _, err := b.chunks.DeleteMany(ctx, bson.D{{Key: "files_id", Value: id}}); err != nil {
			return fmt.Errorf("abort %s: remove chunks: %w", id.Hex(), err)
		}
	case err != nil:
		return fmt.Errorf("abort %s: %w", id.Hex(), err)
	}
	if _, err := b.partials().DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("abort %s: %w", id.Hex(), err)
	}
	return nil
}

// OpenPartials is the number and the total size of owner's partial files
// that are not done: what they will take once complete.
func (b *Bucket) OpenPartials(ctx context.Context, owner string) (count, bytes int64, err error) {
	cur, err := b.partials().Find(ctx, bson.D{{Key: "owner", Value: owner}, {Key: "done", Value: false}})
	if err != nil {
		return 0, 0, fmt.Errorf("partial files of %s: %w", owner, err)
	}
	defer cur.Close(ctx)
	for cur.Next(ctx) {
		var p struct {
			Size int64 `bson:"size"`
		}
		if err := cur.Decode(&p); err != nil {
			return 0, 0, fmt.Errorf("partial files of %s: %w", owner, err)
		}
		count++
		bytes += p.Size
	}
	if err := cur.Err(); err != nil {
		return 0, 0, fmt.Errorf("partial files of %s: %w", owner, err)
	}
	return count, bytes, nil
}

// ExpirePartials aborts the partial files that expired before now, at
// most limit of them (0: all), and returns how many it aborted; it also
// removes the locks left by writers that died.
func (b *Bucket) ExpirePartials(ctx context.Context, now time.Time, limit int) (int, error) {
	filter := bson.D{{Key: "expires", Value: bson.D{{Key: "$lt", Value: now}}}}
	cur, err := b.partials().Find(ctx, filter)
	if err != nil {
		return 0, fmt.Errorf("expired partial files: %w", err)
	}
	var ids []bson.ObjectID
	for cur.Next(ctx) && (limit <= 0 || len(ids) < limit) {
		var p struct {
			ID bson.ObjectID `bson:"_id"`
		}
		if err := cur.Decode(&p); err != nil {
			cur.Close(ctx)
			return 0, fmt.Errorf("expired partial files: %w", err)
		}
		ids = append(ids, p.ID)
	}
	err = cur.Err()
	cur.Close(ctx)
	if err != nil {
		return 0, fmt.Errorf("expired partial files: %w", err)
	}
	for i, id := range ids {
		if err := b.Abort(ctx, id); err != nil {
			return i, err
		}
	}
	if _, err := b.files.Database().Collection(PartialLocksCollection).DeleteMany(ctx,
		bson.D{{Key: "until", Value: bson.D{{Key: "$lt", Value: now.Add(-staleLocks)}}}}); err != nil {
		return len(ids), fmt.Errorf("stale locks of partial files: %w", err)
	}
	return len(ids), nil
}
