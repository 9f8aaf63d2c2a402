// Package tus keeps resumable uploads (the tus 1.0 protocol, served by
// tusd's handler) in a GridFS bucket: Store is tusd's data store over
// gridfs.Partial, Locker its lock over internal/lease, so that every
// replica of the gateway can take any request of an upload.
//
// An upload's bytes go into the bucket's chunks as they arrive; its files
// document is written when the last byte is in, and only then is the
// caller's Complete asked to accept the file (the gateway queues its
// conversion). An upload's ID is its file's ID.
package tus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	tusd "github.com/tus/tusd/v2/pkg/handler"
	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/httpx"
)

// Options are a Store's collaborators and limits.
type Options struct {
	// Lifetime: an upload that receives no byte for this long expires, and
	// its chunks are removed (gridfs.Bucket.ExpirePartials).
	Lifetime time.Duration
	// Owner names the caller of a request; an upload is only its owner's.
	Owner func(ctx context.Context) string
	// Prepare is asked about every new upload of a known size with the
	// client's metadata: it fills the partial file's Name and Metadata, or
	// refuses the upload with an error (a tusd.Error says the status and
	// the sentence).
	Prepare func(ctx context.Context, info tusd.FileInfo) (gridfs.Partial, error)
	// Complete is handed the file once its last byte is stored. An error
	// gives the file back (gridfs.Bucket.Reopen): the client is told, and
	// the bytes it sends again complete it again. It must accept a file it
	// accepted before (a retry after a failure past it).
	Complete func(ctx context.Context, file gridfs.FileInfo) error
}

// Store is tusd's data store over a GridFS bucket.
type Store struct {
	b   *gridfs.Bucket
	opt Options
}

// NewStore returns the store of the resumable uploads into b.
func NewStore(b *gridfs.Bucket, opt Options) *Store {
	return &Store{b: b, opt: opt}
}

// UseIn makes s the composer's core data store and terminater.
func (s *Store) UseIn(c *tusd.StoreComposer) {
	c.UseCore(s)
	c.UseTerminater(s)
}

// The errors tusd answers with, in the gateway's words. ErrNoLength is
// also the gateway's, for a creation without Upload-Length.
var (
	ErrNoLength = tusd.NewError("ERR_UPLOAD_LENGTH", "the upload's length must be given up front (Upload-Length)", http.StatusBadRequest)
	errEmpty    = tusd.NewError("ERR_EMPTY_FILE", "the file is empty", http.StatusBadRequest)
)

// NewUpload records a new upload of the caller's.
func (s *Store) NewUpload(ctx context.Context, info tusd.FileInfo) (tusd.Upload, error) {
	switch {
	case info.SizeIsDeferred:
		return nil, ErrNoLength
	case info.Size <= 0:
		return nil, errEmpty
	case info.IsPartial || info.IsFinal:
		return nil, tusd.ErrNotImplemented
	}
	p, err := s.opt.Prepare(ctx, info)
	if err != nil {
		return nil, err
	}
	p.ID = bson.ObjectID{}
	p.Owner = s.opt.Owner(ctx)
	p.Size = info.Size
	p.Info = info.MetaData
	p.Expires = time.Now().Add(s.opt.Lifetime)
	p, err = s.b.CreatePartial(ctx, p)
	if err != nil {
		return nil, err
	}
	return &upload{s: s, p: p}, nil
}

// GetUpload returns the caller's upload id; another user's is not found.
func (s *Store) GetUpload(ctx context.Context, id string) (tusd.Upload, error) {
	p, err := s.Owned(ctx, id)
	if err != nil {
		return nil, err
	}
	return &upload{s: s, p: p}, nil
}

// Owned returns the state of the caller's upload id: tusd.ErrNotFound when
// there is none, or when it is another user's (which is not told apart).
func (s *Store) Owned(ctx context.Context, id string) (gridfs.Partial, error) {
	oid, err := bson.ObjectIDFromHex(id)
	if err != nil {
		return gridfs.Partial{}, tusd.ErrNotFound
	}
	p, err := s.b.GetPartial(ctx, oid)
	switch {
	case errors.Is(err, gridfs.ErrNotFound):
		return gridfs.Partial{}, tusd.ErrNotFound
	case err != nil:
		return gridfs.Partial{}, err
	case p.Owner != s.opt.Owner(ctx) || (!p.Done && time.Now().After(p.Expires)):
		return gridfs.Partial{}, tusd.ErrNotFound
	}
	return p, nil
}

// AsTerminatableUpload is tusd's termination extension (DELETE).
func (s *Store) AsTerminatableUpload(u tusd.Upload) tusd.TerminatableUpload { return u.(*upload) }

// upload is one upload as read at the start of a request (the request
// holds its lock).
type upload struct {
	s *Store
	p gridfs.Partial
}

func (u *upload) GetInfo(context.Context) (tusd.FileInfo, error) {
	return tusd.FileInfo{ID: u.p.ID.Hex(), Size: u.p.Size, Offset: u.p.Offset, MetaData: u.p.Info}, nil
}

// WriteChunk stores what src brings at offset. A body cut short is not
// the store's error: what came is stored and counted, and tusd reports the
// cut.
func (u *upload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	if offset != u.p.Offset {
		return 0, tusd.ErrMismatchOffset
	}
	if u.p.Done || u.p.Offset == u.p.Size {
		return 0, nil
	}
	body := &httpx.TrackingReader{R: src}
	n, err := u.s.b.Append(ctx, &u.p, body, time.Now().Add(u.s.opt.Lifetime))
	if err != nil && body.Err != nil && errors.Is(err, body.Err) {
		err = nil
	}
	return n, err
}

func (u *upload) GetReader(context.Context) (io.ReadCloser, error) {
	// Downloads go through /download, of the MP3; tusd's GET is off.
	return nil, tusd.ErrNotImplemented
}

// FinishUpload writes the file and hands it to Complete; a file Complete
// refuses is given back, so that the client's retry completes it again.
// The work does not stop with the client: it runs to its end (bounded) so
// that no half-queued file is left.
func (u *upload) FinishUpload(ctx context.Context) error {
	if u.p.Done {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	file, err := u.s.b.Complete(ctx, &u.p)
	if errors.Is(err, gridfs.ErrExists) {
		// Completed and accepted by a request that failed before it could
		// say so (MarkDone): Complete is asked again.
		file, err = u.s.b.Stat(ctx, u.p.ID)
	}
	if err != nil {
		return fmt.Errorf("complete upload %s: %w", u.p.ID.Hex(), err)
	}
	if err := u.s.opt.Complete(ctx, file); err != nil {
		if rerr := u.s.b.Reopen(ctx, &u.p); rerr != nil {
			return fmt.Errorf("%w (and giving the upload back: %v)", err, rerr)
		}
		return err
	}
	return u.s.b.MarkDone(ctx, &u.p)
}

// Terminate removes an upload: its chunks and state, or only the state
// once it is a file (the file is then its job's: deleting the job removes
// it).
func (u *upload) Terminate(ctx context.Context) error {
	return u.s.b.Abort(ctx, u.p.ID)
}
