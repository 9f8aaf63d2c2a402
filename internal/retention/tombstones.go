package retention

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// ErrNotFound means no MP3 of that id expired.
var ErrNotFound = errors.New("no expired mp3")

// TombstoneCollection holds one record per expired MP3, in the MP3s'
// database, so that a download of one answers 410 rather than 404.
const TombstoneCollection = "expired"

// Tombstone records an MP3 the sweeper deleted.
type Tombstone struct {
	ID         bson.ObjectID `bson:"_id"`
	Owner      string        `bson:"owner,omitempty"` // its metadata.owner; empty for the original converter's
	UploadedAt time.Time     `bson:"uploaded_at"`
	ExpiredAt  time.Time     `bson:"expired_at"`
}

// Tombstones keeps them.
type Tombstones struct{ c *mongo.Collection }

// NewTombstones returns the tombstones of db (the MP3s' database).
func NewTombstones(db *mongo.Database) *Tombstones {
	return &Tombstones{c: db.Collection(TombstoneCollection)}
}

// Add records t (again: no change).
func (ts *Tombstones) Add(ctx context.Context, t Tombstone) error {
	fields := bson.D{{Key: "uploaded_at", Value: t.UploadedAt}, {Key: "expired_at", Value: t.ExpiredAt}}
	if t.Owner != "" {
		fields = append(fields, bson.E{Key: "owner", Value: t.Owner})
	}
	_, err := ts.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: t.ID}}, bson.D{{Key: "$setOnInsert", Value: fields}},
		options.UpdateOne().SetUpsert(true))
	if err != nil && !mongo.IsDuplicateKeyError(err) { // another sweeper, at the same moment
		return fmt.Errorf("record expired mp3 %s: %w", t.ID.Hex(), err)
	}
	return nil
}

// Get returns the tombstone of MP3 id, or ErrNotFound.
func (ts *Tombstones) Get(ctx context.Context, id bson.ObjectID) (Tombstone, error) {
	var t Tombstone
	err := ts.c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&t)
	switch {
	case errors.Is(err, mongo.ErrNoDocuments):
		return Tombstone{}, fmt.Errorf("mp3 %s: %w", id.Hex(), ErrNotFound)
	case err != nil:
		return Tombstone{}, fmt.Errorf("look up expired mp3 %s: %w", id.Hex(), err)
	}
	return t, nil
}

// forget removes tombstones of MP3s that expired before before.
func (ts *Tombstones) forget(ctx context.Context, before time.Time) (int64, error) {
	res, err := ts.c.DeleteMany(ctx, bson.D{{Key: "expired_at", Value: bson.D{{Key: "$lt", Value: before}}}})
	if err != nil {
		return 0, fmt.Errorf("forget old tombstones: %w", err)
	}
	return res.DeletedCount, nil
}
