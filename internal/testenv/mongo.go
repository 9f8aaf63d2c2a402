package testenv

import (
	"context"
	"os"
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

// LogStorage logs which storage a benchmark measures: stock FerretDB, or
// FerretDB with the indexes a MongoDB server would use (the stack's
// FERRETDB_INDEXED=1, see deploy/stack.sh).
func LogStorage(b testing.TB) {
	b.Helper()
	if os.Getenv("FERRETDB_INDEXED") == "1" {
		b.Logf("storage: FerretDB with GIN indexes its lookups use (FERRETDB_INDEXED=1): point reads cost about what MongoDB's index makes them cost")
		return
	}
	b.Logf("storage: stock FerretDB (each chunk lookup scans its collection); FERRETDB_INDEXED=1 deploy/stack.sh up measures with indexes")
}
