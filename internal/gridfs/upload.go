package gridfs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/lease"
)

// UploadOptions tune one upload. The zero value is a fresh ObjectID, the
// default chunk size and no size limit.
type UploadOptions struct {
	// ID of the new file; zero means a fresh ObjectID. With a given ID, an
	// existing file gives ErrExists, another upload of that ID still
	// running gives ErrConflict (see Upload), and chunks of that ID without
	// a files document (left by a writer that died) are removed first.
	ID bson.ObjectID
	// ChunkSize in bytes; 0 means DefaultChunkSize.
	ChunkSize int32
	// MaxBytes > 0 limits the file size: a longer stream gives ErrTooLarge.
	MaxBytes int64
	// ClaimTTL is how long the claim of an upload with a given ID lasts
	// unrenewed (it is renewed every third of it): how long a writer that
	// died keeps the ID from the next upload [30s].
	ClaimTTL time.Duration
	// Writer names this upload in its claim on a given ID; unique to the
	// upload [random].
	Writer string
	// Supersede names a writer that the caller knows is gone (it took over
	// that writer's exclusive lease on the file): its claim on the ID is
	// taken over at once, expired or not, and its chunks removed.
	Supersede string
	// Metadata, when not nil, is called once the last byte is read, just
	// before the files document is written: what it returns (a document,
	// or nil) is the file's metadata, in place of Upload's meta. It is for
	// what is known only at the end, such as the length of what a
	// converter made.
	Metadata func() any
}

// uploadsCollection holds the claims of the uploads with a given ID that
// are running, leases of internal/lease: {_id: file ID, writer, since,
// until}. It is not part of the GridFS layout; other GridFS tools neither
// need nor see it.
const uploadsCollection = "fs.uploads"

// defaultClaimTTL is UploadOptions.ClaimTTL's default.
const defaultClaimTTL = 30 * time.Second

// Upload streams r into a new file named name, with meta (a document, or
// nil) stored as its metadata. It holds one insert batch (≈4 MiB) in memory
// whatever the size of the stream. The files document is written last, so
// the file becomes visible only once complete. On any failure (r's error,
// ctx cancelled, ErrTooLarge, ErrExists, ErrConflict) the chunks this upload
// wrote are removed, best effort, and the error is returned.
//
// An upload with a given ID first claims that ID (a document in
// fs.uploads, renewed every third of ClaimTTL while it runs, removed when
// it ends), and only then removes the ID's stray chunks: a second upload of
// the ID while the first runs gets ErrConflict at once and touches none of
// the first's chunks, so two writers of one ID (two converters on one
// video) never interleave. A writer that died leaves a claim that expires
// after ClaimTTL (or at once for the caller that names it in Supersede);
// the next upload takes it over and removes the dead writer's chunks. An
// upload that loses its claim (not renewed in time, taken over) stops with
// ErrConflict before writing its files document. Claims are compared with
// the writers' clocks, which must agree (NTP).
func (b *Bucket) Upload(ctx context.Context, name string, r io.Reader, meta any, opt UploadOptions) (FileInfo, error) {
	chunkSize := opt.ChunkSize
	if chunkSize == 0 {
		chunkSize = DefaultChunkSize
	}
	if chunkSize < 0 || opt.MaxBytes < 0 {
		return FileInfo{}, fmt.Errorf("upload %q: %w: chunk size %d, max bytes %d", name, errBadOptions, chunkSize, opt.MaxBytes)
	}
	metaDoc, err := marshalMetadata(meta)
	if err != nil {
		return FileInfo{}, fmt.Errorf("upload %q: %w", name, err)
	}
	info := FileInfo{ID: opt.ID, Name: name, ChunkSize: chunkSize, Metadata: metaDoc}
	given := !opt.ID.IsZero()
	if !given {
		info.ID = bson.NewObjectID()
	}
	u, err := newUpload(b, info)
	if err != nil {
		return FileInfo{}, fmt.Errorf("upload %q: %w", name, err)
	}
	u.metadata = opt.Metadata
	if given {
		ttl := opt.ClaimTTL
		if ttl <= 0 {
			ttl = defaultClaimTTL
		}
		writer := opt.Writer
		if writer == "" {
			writer = hex.EncodeToString(u.prefix[:])
		}
		cl, err := b.claim(ctx, info.ID, writer, opt.Supersede, ttl)
		if err != nil {
			return FileInfo{}, fmt.Errorf("upload %q as %s: %w", name, info.ID.Hex(), err)
		}
		defer cl.release(ctx)
		var stop func()
		ctx, stop = cl.keep(ctx)
		defer stop()
		u.claim = cl
		if err := b.clearStrays(ctx, info.ID); err != nil {
			return FileInfo{}, fmt.Errorf("upload %q as %s: %w", name, info.ID.Hex(), err)
		}
	}
	if opt.MaxBytes > 0 {
		r = io.LimitReader(r, opt.MaxBytes+1)
	}
	if err := u.run(ctx, r, opt.MaxBytes, given); err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, ErrConflict) && !errors.Is(err, ErrConflict) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
		if u.wrote {
			if cerr := u.cleanup(ctx); cerr != nil {
				// The server is likely down (the reason the upload failed):
				// keep trying in the background, or the chunks stay forever
				// (their file id is fresh, so no later upload clears them).
				go u.cleanupLater(context.WithoutCancel(ctx))
				err = fmt.Errorf("%w (and removing its chunks, retried in the background: %v)", err, cerr)
			}
		}
		return FileInfo{}, fmt.Errorf("upload %q as %s: %w", name, info.ID.Hex(), err)
	}
	return u.info, nil
}

// clearStrays returns ErrExists when id's files document exists, and
// otherwise removes chunks of id that have no files document. The caller
// holds id's claim: no other upload of id is running.
func (b *Bucket) clearStrays(ctx context.Context, id bson.ObjectID) error {
	_, err := b.Stat(ctx, id)
	switch {
	case err == nil:
		return ErrExists
	case !errors.Is(err, ErrNotFound):
		return err
	}
	if _, err := b.chunks.DeleteMany(ctx, bson.D{{Key: "files_id", Value: id}}); err != nil {
		return fmt.Errorf("remove stray chunks: %w", err)
	}
	return nil
}

// upload is one file being written.
type upload struct {
	b      *Bucket
	info   FileInfo
	prefix [9]byte // chunk _id: prefix + 3-byte n, see chunkID
	chunks int64   // chunks inserted so far
	wrote  bool    // an insert was attempted: cleanup is needed on failure
	claim  *claim  // the claim on a given ID, or nil

	metadata func() any // UploadOptions.Metadata
}

func newUpload(b *Bucket, info FileInfo) (*upload, error) {
	u := &upload{b: b, info: info}
	// A chunk's _id is an ObjectID made of the upload's time (4 bytes), a
	// random value per upload (5 bytes) and n (3 bytes): the usual ObjectID
	// layout, so the chunks of this upload, and only those, are the _id
	// range chunkID(0)..chunkID(maxChunks-1), which cleanup deletes without
	// touching another writer's chunks of the same file ID.
	base := bson.NewObjectID()
	copy(u.prefix[:4], base[:4])
	if _, err := rand.Read(u.prefix[4:]); err != nil {
		return nil, fmt.Errorf("chunk id: %w", err)
	}
	return u, nil
}

func (u *upload) chunkID(n int64) bson.ObjectID {
	var id bson.ObjectID
	copy(id[:9], u.prefix[:])
	id[9], id[10], id[11] = byte(n>>16), byte(n>>8), byte(n)
	return id
}

// ours selects the chunks this upload wrote.
func (u *upload) ours() bson.D {
	return bson.D{
		{Key: "files_id", Value: u.info.ID},
		{Key: "_id", Value: bson.D{{Key: "$gte", Value: u.chunkID(0)}, {Key: "$lte", Value: u.chunkID(maxChunks - 1)}}},
	}
}

func (u *upload) run(ctx context.Context, r io.Reader, maxBytes int64, verify bool) error {
	size := int(u.info.ChunkSize)
	perBatch := max(1, batchBytes/size)
	buf := make([]byte, perBatch*size)
	docs := make([]any, 0, perBatch)
	for done := false; !done; {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, eof, err := fill(r, buf)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		done = eof
		u.info.Length += int64(k)
		if maxBytes > 0 && u.info.Length > maxBytes {
			return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, maxBytes)
		}
		docs = docs[:0]
		for off := 0; off < k; off += size {
			n := u.chunks + int64(len(docs))
			if n >= maxChunks {
				return fmt.Errorf("%w: more than %d chunks", ErrTooLarge, maxChunks)
			}
			docs = append(docs, chunkDoc(u.chunkID(n), u.info.ID, n, buf[off:min(off+size, k)]))
		}
		if len(docs) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		u.wrote = true
		if _, err := u.b.chunks.InsertMany(ctx, docs); err != nil {
			if mongo.IsDuplicateKeyError(err) {
				return fmt.Errorf("%w: %w", ErrConflict, err)
			}
			return fmt.Errorf("insert chunks: %w", err)
		}
		u.chunks += int64(len(docs))
	}
	if u.claim != nil {
		// Still ours, for ClaimTTL from now: nobody else can take the ID
		// over (and remove our chunks as strays) before the files document
		// is written.
		if err := u.claim.renew(ctx); err != nil {
			return err
		}
	}
	if verify {
		// With a given ID another writer of the same ID may have removed
		// our chunks as strays (one that does not claim IDs, or one that
		// took over a claim we failed to renew): make sure all of them are
		// still there.
		got, err := u.b.chunks.CountDocuments(ctx, u.ours())
		if err != nil {
			return fmt.Errorf("count chunks: %w", err)
		}
		if got != u.chunks {
			return fmt.Errorf("%w: %d of %d chunks left", ErrConflict, got, u.chunks)
		}
	}
	if u.metadata != nil {
		doc, err := marshalMetadata(u.metadata())
		if err != nil {
			return err
		}
		u.info.Metadata = doc
	}
	u.info.UploadDate = time.Now().UTC().Truncate(time.Millisecond)
	if _, err := u.b.files.InsertOne(ctx, u.info.document()); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("%w: %w", ErrExists, err)
		}
		return fmt.Errorf("insert files document: %w", err)
	}
	return nil
}

// chunkDoc is chunk n of file, with the given _id.
func chunkDoc(id, file bson.ObjectID, n int64, data []byte) bson.D {
	return bson.D{
		{Key: "_id", Value: id},
		{Key: "files_id", Value: file},
		{Key: "n", Value: int32(n)},
		{Key: "data", Value: bson.Binary{Data: data}},
	}
}

// marshalMetadata is meta as a files document's metadata (nil: none).
func marshalMetadata(meta any) (bson.Raw, error) {
	if meta == nil {
		return nil, nil
	}
	raw, err := bson.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", errBadOptions, err)
	}
	return raw, nil
}

// document is f's files document, in the field order of the drivers'.
func (f FileInfo) document() bson.D {
	doc := bson.D{
		{Key: "_id", Value: f.ID},
		{Key: "length", Value: f.Length},
		{Key: "chunkSize", Value: f.ChunkSize},
		{Key: "uploadDate", Value: bson.NewDateTimeFromTime(f.UploadDate)},
		{Key: "filename", Value: f.Name},
	}
	if f.Metadata != nil {
		doc = append(doc, bson.E{Key: "metadata", Value: f.Metadata})
	}
	return doc
}

// claim is an upload's claim on a given file ID (see Upload): a lease
// (internal/lease) whose owner is the writer.
type claim struct {
	s      *lease.Store
	id     bson.ObjectID
	writer string
	ttl    time.Duration
	until  time.Time // as taken
}

// claim claims id for writer: when no claim exists, or the one that does
// has expired (its writer died) or is supersede's. Of several uploads at
// once exactly one gets it (an insert decides, on MongoDB and on FerretDB,
// whose conditional writes are not atomic); the others get ErrConflict,
// whatever their writer's name.
func (b *Bucket) claim(ctx context.Context, id bson.ObjectID, writer, supersede string, ttl time.Duration) (*claim, error) {
	s := lease.NewStore(b.files.Database().Collection(uploadsCollection), lease.Options{OwnerField: "writer"})
	l, err := s.Take(ctx, id, lease.Holder{Owner: writer}, ttl, lease.TakeOptions{Supersede: supersede, NoRenew: true})
	var held *lease.HeldError
	switch {
	case errors.As(err, &held):
		return nil, fmt.Errorf("%w (claimed by another upload until %s)", ErrConflict, held.Lease.Until.Format(time.RFC3339Nano))
	case errors.Is(err, lease.ErrHeld):
		return nil, fmt.Errorf("%w (%v)", ErrConflict, err) // another upload is taking it over, or contended
	case err != nil:
		return nil, fmt.Errorf("claim the id: %w", err)
	}
	return &claim{s: s, id: id, writer: writer, ttl: ttl, until: l.Until}, nil
}

// renew extends the claim to ttl from now; ErrConflict if it is no longer
// this writer's.
func (cl *claim) renew(ctx context.Context) error {
	err := cl.s.Renew(ctx, cl.id, cl.writer, cl.ttl)
	switch {
	case errors.Is(err, lease.ErrLost):
		return fmt.Errorf("%w (the id's claim was lost)", ErrConflict)
	case err != nil:
		return fmt.Errorf("renew the id's claim: %w", err)
	}
	return nil
}

// keep renews the claim every third of its ttl until stop is called. The
// returned ctx is cancelled with cause ErrConflict once the claim is lost
// or could not be renewed before it expires.
func (cl *claim) keep(ctx context.Context) (context.Context, func()) {
	renew := func(ctx context.Context) error { return cl.s.Renew(ctx, cl.id, cl.writer, cl.ttl) }
	return lease.Keep(ctx, cl.ttl, cl.until, renew, lease.KeepOptions{Lost: func(err error) error {
		return fmt.Errorf("%w (the id's claim could not be kept: %v)", ErrConflict, err)
	}})
}

// release removes the claim if it is still this writer's.
func (cl *claim) release(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = cl.s.Release(ctx, cl.id, cl.writer)
}

// cleanup removes this upload's chunks with a fresh bounded context, as ctx
// may be the cancelled one that made the upload fail.
func (u *upload) cleanup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, err := u.b.chunks.DeleteMany(ctx, u.ours())
	return err
}

// cleanupLater retries cleanup with backoff for up to cleanupRetryFor.
func (u *upload) cleanupLater(ctx context.Context) {
	deadline := time.Now().Add(cleanupRetryFor)
	for wait := time.Second; time.Now().Before(deadline); wait = min(2*wait, 30*time.Second) {
		time.Sleep(wait)
		if u.cleanup(ctx) == nil {
			return
		}
	}
}

// fill reads until buf is full or r reports io.EOF. Unlike io.ReadFull it
// passes every other error through, io.ErrUnexpectedEOF included: a
// truncated request body must fail the upload, not end the file early.
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}
