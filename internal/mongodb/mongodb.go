// Package mongodb opens what the services keep in MongoDB:
// one client, the GridFS buckets of the videos and of the MP3s (the
// original's databases "videos" and "mp3s") and the job records, which live
// beside the videos.
package mongodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"mp3converter/internal/config"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/retention"
)

// StoreConfig locates MongoDB and the suite's databases; the gateway, the
// converter and the notification embed it, so that they read the same
// names with the same defaults.
type StoreConfig struct {
	MongoURI config.Secret `env:"MONGODB_URI" envDefault:"mongodb://mongodb:27017"`
	// The original's database names; settable so that several suites (or
	// tests) can share one MongoDB server.
	VideosDB string `env:"MONGODB_VIDEOS_DB" envDefault:"videos"`
	MP3sDB   string `env:"MONGODB_MP3S_DB" envDefault:"mp3s"`
}

// Validate reports the empty values, naming each variable.
func (c StoreConfig) Validate() error {
	var errs []error
	for name, v := range map[string]string{"MONGODB_URI": c.MongoURI.Reveal(), "MONGODB_VIDEOS_DB": c.VideosDB, "MONGODB_MP3S_DB": c.MP3sDB} {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, fmt.Errorf("%s is empty", name))
		}
	}
	return errors.Join(errs...)
}

// Stores are the client and the stores opened on it.
type Stores struct {
	Client *mongo.Client
	Videos *gridfs.Bucket
	MP3s   *gridfs.Bucket
	Jobs   *jobs.Store
	// Expired are the tombstones of MP3s the retention sweeper deleted.
	Expired *retention.Tombstones
}

// Open connects to uri (server selection and connection bounded to 5 s,
// app names the client in the server's logs) and opens the stores in the
// databases videosDB and mp3sDB, creating their indexes if missing.
func Open(uri, videosDB, mp3sDB, app string) (*Stores, error) {
	client, err := mongo.Connect(options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(5 * time.Second).SetConnectTimeout(5 * time.Second).SetAppName(app))
	if err != nil {
		return nil, fmt.Errorf("mongodb: %w", err)
	}
	s := &Stores{Client: client}
	if s.Videos, err = gridfs.NewBucket(client.Database(videosDB)); err != nil {
		err = fmt.Errorf("videos bucket: %w", err)
	} else if s.MP3s, err = gridfs.NewBucket(client.Database(mp3sDB)); err != nil {
		err = fmt.Errorf("mp3s bucket: %w", err)
	} else if s.Jobs, err = jobs.NewStore(client.Database(videosDB)); err != nil {
		err = fmt.Errorf("jobs: %w", err)
	}
	if err != nil {
		_ = client.Disconnect(context.Background())
		return nil, err
	}
	s.Expired = retention.NewTombstones(client.Database(mp3sDB))
	return s, nil
}

// Ping reports whether the server answers: the readiness check.
func (s *Stores) Ping(ctx context.Context) error { return s.Client.Ping(ctx, nil) }

// Close disconnects the client.
func (s *Stores) Close() error { return s.Client.Disconnect(context.Background()) }

// Open opens the stores c names, app naming the client in the server's
// logs.
func (c StoreConfig) Open(app string) (*Stores, error) {
	return Open(c.MongoURI.Reveal(), c.VideosDB, c.MP3sDB, app)
}
