// Package gridfs is a streaming store for files in the standard GridFS layout
// (bucket "fs": collections fs.files and fs.chunks), readable and writable by
// the original's Python gridfs library and by MongoDB's own tools.
//
// It exists beside the driver's GridFS bucket because of two properties the
// services need on both MongoDB and FerretDB (the dev/CI server):
//
//   - memory stays flat whatever the file size, in this process and in the
//     server: reads use small cursor batches (FerretDB answers a getMore
//     without batchSize with 250 documents, ≈64 MiB of 255 KiB chunks, which
//     the driver refuses as "length of read message too large") and avoid
//     server-side sorts of a whole file (FerretDB sorts in memory);
//   - a file is visible only once complete, and a failed upload removes what
//     it wrote.
package gridfs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Sentinel errors of the store.
var (
	ErrNotFound   = errors.New("file not found")
	ErrExists     = errors.New("file already exists")
	ErrTooLarge   = errors.New("file too large")
	ErrConflict   = errors.New("file is being written by another upload")
	ErrCorrupt    = errors.New("file chunks missing or inconsistent")
	ErrBadOffset  = errors.New("offset out of range")
	errBadOptions = errors.New("invalid upload options")
)

const (
	// DefaultChunkSize is GridFS's standard chunk size (pymongo, the drivers).
	DefaultChunkSize = 255 * 1024
	// batchBytes bounds one InsertMany on upload and one cursor batch on
	// download: big enough to amortize round trips, small enough to keep
	// memory flat.
	batchBytes = 4 << 20
	// fallbackRange is the number of chunks per sorted range query when a
	// file's chunks do not come back in order from the plain scan.
	fallbackRange = 32
	// cleanupTimeout bounds the best-effort removal of a failed upload;
	// cleanupRetryFor is how long it is retried in the background when the
	// server does not answer.
	cleanupTimeout  = 30 * time.Second
	cleanupRetryFor = 10 * time.Minute
	// setupTimeout bounds index creation in NewBucket.
	setupTimeout = 30 * time.Second
	// maxChunks is the number of chunks an upload can address: the chunk
	// _id embeds n in its 3-byte counter (see chunkID).
	maxChunks = 1 << 24
)

// Bucket is the GridFS bucket "fs" of one database.
type Bucket struct {
	files  *mongo.Collection
	chunks *mongo.Collection
}

// FileInfo is a files document.
type FileInfo struct {
	ID         bson.ObjectID `bson:"_id"`
	Name       string        `bson:"filename"`
	Length     int64         `bson:"length"`
	ChunkSize  int32         `bson:"chunkSize"`
	UploadDate time.Time     `bson:"uploadDate"`
	Metadata   bson.Raw      `bson:"metadata,omitempty"`
}

// chunks returns the number of chunks the file has.
func (f FileInfo) chunks() int64 {
	if f.ChunkSize <= 0 {
		return 0
	}
	return (f.Length + int64(f.ChunkSize) - 1) / int64(f.ChunkSize)
}

// NewBucket returns the bucket "fs" of db, creating the standard GridFS
// indexes ({files_id:1, n:1} unique on fs.chunks, {filename:1, uploadDate:1}
// on fs.files) when no index with those keys exists.
func NewBucket(db *mongo.Database) (*Bucket, error) {
	if db == nil {
		return nil, errors.New("gridfs: nil database")
	}
	b := &Bucket{
		files:  db.Collection("fs.files"),
		chunks: db.Collection("fs.chunks"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := ensureIndex(ctx, b.chunks, []string{"files_id", "n"}, true); err != nil {
		return nil, fmt.Errorf("gridfs %s: %w", db.Name(), err)
	}
	if err := ensureIndex(ctx, b.files, []string{"filename", "uploadDate"}, false); err != nil {
		return nil, fmt.Errorf("gridfs %s: %w", db.Name(), err)
	}
	// For OwnerBytes (the upload quota).
	if err := ensureIndex(ctx, b.files, []string{"metadata.owner"}, false); err != nil {
		return nil, fmt.Errorf("gridfs %s: %w", db.Name(), err)
	}
	return b, nil
}

// Database is the bucket's database.
func (b *Bucket) Database() *mongo.Database { return b.files.Database() }

// OwnerBytes is the total length of the files whose metadata.owner is
// owner.
func (b *Bucket) OwnerBytes(ctx context.Context, owner string) (int64, error) {
	cur, err := b.files.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "metadata.owner", Value: owner}}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}, {Key: "bytes", Value: bson.D{{Key: "$sum", Value: "$length"}}}}}},
	})
	if err != nil {
		return 0, fmt.Errorf("bytes stored by %s: %w", owner, err)
	}
	defer cur.Close(ctx)
	var rows []struct {
		Bytes int64 `bson:"bytes"`
	}
	if err := cur.All(ctx, &rows); err != nil {
		return 0, fmt.Errorf("bytes stored by %s: %w", owner, err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	return rows[0].Bytes, nil
}

// ensureIndex creates the ascending index on fields unless one with the same
// keys exists (under any name, as other tools may have created it).
func ensureIndex(ctx context.Context, c *mongo.Collection, fields []string, unique bool) error {
	specs, err := c.Indexes().ListSpecifications(ctx)
	if err != nil && !isNamespaceNotFound(err) {
		return fmt.Errorf("list indexes of %s: %w", c.Name(), err)
	}
	for _, s := range specs {
		if ascendingKeys(s.KeysDocument, fields) {
			return nil
		}
	}
	keys := bson.D{}
	for _, f := range fields {
		keys = append(keys, bson.E{Key: f, Value: int32(1)})
	}
	model := mongo.IndexModel{Keys: keys}
	if unique {
		model.Options = options.Index().SetUnique(true)
	}
	if _, err := c.Indexes().CreateOne(ctx, model); err != nil {
		return fmt.Errorf("create index on %s: %w", c.Name(), err)
	}
	return nil
}

// ascendingKeys reports whether an index key document is {fields[0]: 1, …},
// comparing numerically (1 may be stored as int32, int64 or double).
func ascendingKeys(doc bson.Raw, fields []string) bool {
	elems, err := doc.Elements()
	if err != nil || len(elems) != len(fields) {
		return false
	}
	for i, e := range elems {
		if e.Key() != fields[i] {
			return false
		}
		v, ok := e.Value().AsInt64OK()
		if !ok {
			f, okf := e.Value().DoubleOK()
			if !okf || f != 1 {
				return false
			}
			v = 1
		}
		if v != 1 {
			return false
		}
	}
	return true
}

// Stat returns the files document of id.
func (b *Bucket) Stat(ctx context.Context, id bson.ObjectID) (FileInfo, error) {
	var f FileInfo
	err := b.files.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&f)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return FileInfo{}, fmt.Errorf("stat %s: %w", id.Hex(), ErrNotFound)
	}
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat %s: %w", id.Hex(), err)
	}
	return f, nil
}

// Find returns the files documents matching filter (a query on fs.files, for
// example bson.M{"metadata.video_fid": fid}), oldest first.
func (b *Bucket) Find(ctx context.Context, filter any) ([]FileInfo, error) {
	return b.FindLimit(ctx, filter, 0)
}

// FindLimit is Find returning at most limit documents (0: all).
func (b *Bucket) FindLimit(ctx context.Context, filter any, limit int) ([]FileInfo, error) {
	if filter == nil {
		filter = bson.D{}
	}
	opts := options.Find().SetSort(bson.D{{Key: "uploadDate", Value: 1}, {Key: "_id", Value: 1}})
	if limit > 0 {
		opts.SetLimit(int64(limit))
	}
	cur, err := b.files.Find(ctx, filter, opts)
	if err != nil {
		return nil, fmt.Errorf("find files: %w", err)
	}
	out := []FileInfo{}
	if err := cur.All(ctx, &out); err != nil {
		return nil, fmt.Errorf("find files: %w", err)
	}
	return out, nil
}

// SetMetadataIfAbsent sets metadata.<key> of file id to value unless the
// file's metadata has a non-null key already (never overwritten), and
// reports whether it wrote. A file with no metadata at all (as the original's
// pymongo fs.put stores it) gets a metadata document {key: value}. A missing
// file gives ErrNotFound. key must be a plain field name.
func (b *Bucket) SetMetadataIfAbsent(ctx context.Context, id bson.ObjectID, key string, value any) (bool, error) {
	if key == "" || strings.ContainsAny(key, ".$") {
		return false, fmt.Errorf("set metadata %q of %s: invalid key", key, id.Hex())
	}
	absent := func(field string) bson.E {
		return bson.E{Key: "$or", Value: bson.A{
			bson.D{{Key: field, Value: bson.D{{Key: "$exists", Value: false}}}},
			bson.D{{Key: field, Value: nil}},
		}}
	}
	// No metadata (or null): a "metadata.<key>" $set cannot create a field
	// inside null, so the document is set whole.
	res, err := b.files.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, absent("metadata")},
		bson.D{{Key: "$set", Value: bson.D{{Key: "metadata", Value: bson.D{{Key: key, Value: value}}}}}})
	if err != nil {
		return false, fmt.Errorf("set metadata %s of %s: %w", key, id.Hex(), err)
	}
	if res.MatchedCount > 0 {
		return true, nil
	}
	res, err = b.files.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}, absent("metadata." + key)},
		bson.D{{Key: "$set", Value: bson.D{{Key: "metadata." + key, Value: value}}}})
	if err != nil {
		return false, fmt.Errorf("set metadata %s of %s: %w", key, id.Hex(), err)
	}
	if res.MatchedCount > 0 {
		return true, nil
	}
	n, err := b.files.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return false, fmt.Errorf("set metadata %s of %s: %w", key, id.Hex(), err)
	}
	if n == 0 {
		return false, fmt.Errorf("set metadata %s of %s: %w", key, id.Hex(), ErrNotFound)
	}
	return false, nil
}

// Delete removes the files document, then the chunks, of id. A missing files
// document gives ErrNotFound (stray chunks are removed all the same).
func (b *Bucket) Delete(ctx context.Context, id bson.ObjectID) error {
	res, err := b.files.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}})
	if err != nil {
		return fmt.Errorf("delete file %s: %w", id.Hex(), err)
	}
	if _, err := b.chunks.DeleteMany(ctx, bson.D{{Key: "files_id", Value: id}}); err != nil {
		return fmt.Errorf("delete chunks of %s: %w", id.Hex(), err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("delete file %s: %w", id.Hex(), ErrNotFound)
	}
	return nil
}

func isNamespaceNotFound(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorCode(26)
}

func isCursorNotFound(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && se.HasErrorCode(43)
}
