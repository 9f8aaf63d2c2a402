package testenv

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Mongo connects to the stack's MongoDB wire server (FerretDB locally, MongoDB
// elsewhere) and returns a fresh database private to the test, dropped (and
// the client disconnected) in t.Cleanup.
func Mongo(t testing.TB) *mongo.Database {
	t.Helper()
	uri := Getenv(t, "MONGODB_URI")
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatalf("connect to %s: %v", uri, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx, nil); err != nil {
		_ = client.Disconnect(context.Background())
		t.Fatalf("ping %s: %v", uri, err)
	}
	db := client.Database(Name("test"))
	t.Cleanup(func() {
		// Minutes: on FerretDB, dropping a database that holds a 2 GiB file
		// (the large-file benchmark), or whose chunks a converter is still
		// deleting, takes more than one.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := db.Drop(ctx); err != nil {
			t.Errorf("drop test database %s: %v", db.Name(), err)
		}
		if err := client.Disconnect(ctx); err != nil {
			t.Errorf("disconnect from %s: %v", uri, err)
		}
	})
	return db
}
