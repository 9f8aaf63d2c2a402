package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"mp3converter/internal/auth"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/testenv"
)

// BenchmarkGatewayVsRawGridFS runs the real auth and gateway binaries and
// measures, in one run against the same MongoDB server and the same bytes:
//   - upload throughput through POST /upload vs a raw mongo-driver GridFS upload;
//   - download throughput through GET /download vs a raw driver GridFS download;
//   - the gateway's resident memory growth while it takes a large upload.
//
// BENCH_MB sets the throughput file size (default 64; keep it under ~70 so
// the driver's own download works on FerretDB), BENCH_BIG_MB the memory
// test's upload (default 1024). Run with `make bench`.
func BenchmarkGatewayVsRawGridFS(b *testing.B) {
	size := envInt("BENCH_MB", 64) << 20
	bigSize := envInt("BENCH_BIG_MB", 1024) << 20
	ctx := context.Background()

	db := testenv.MySQL(b)
	mc := auth.MySQLConfig{Host: db.Host, Port: db.Port, User: db.User, Password: db.Password, DB: db.Name}
	if _, _, err := auth.Migrate(ctx, mc); err != nil {
		b.Fatal(err)
	}
	store, err := auth.OpenStore(ctx, mc)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	hash, _ := auth.HashPassword("pw", 4)
	if err := store.PutUser(ctx, "bench@example.com", hash, false); err != nil {
		b.Fatal(err)
	}
	videosDB, mp3sDB, rawDB := testenv.Mongo(b), testenv.Mongo(b), testenv.Mongo(b)
	amqpURL := testenv.RabbitMQ(b)
	queue := testenv.Queue(b, amqpURL, "benchvideo")

	authPort, gwPort := testenv.FreePort(b), testenv.FreePort(b)
	testenv.Start(b, "auth", testenv.Binary(b, "auth"), authPort, map[string]string{
		"MYSQL_HOST": db.Host, "MYSQL_PORT": strconv.Itoa(db.Port), "MYSQL_USER": db.User, "MYSQL_PASSWORD": db.Password,
		"MYSQL_DB": db.Name, "JWT_SECRET": "bench", "LOG_LEVEL": "warn",
	})
	gw := testenv.Start(b, "gateway", testenv.Binary(b, "gateway"), gwPort, map[string]string{
		"AUTH_SVC_ADDRESS": fmt.Sprintf("127.0.0.1:%d", authPort), "MONGODB_URI": testenv.Getenv(b, "MONGODB_URI"),
		"RABBITMQ_URL": amqpURL, "VIDEO_QUEUE": queue, "MONGODB_VIDEOS_DB": videosDB.Name(), "MONGODB_MP3S_DB": mp3sDB.Name(),
		"MAX_UPLOAD_BYTES": strconv.Itoa(bigSize + 1<<20), "LOG_LEVEL": "warn",
	})
	req, _ := http.NewRequest("POST", gw.URL()+"/login", nil)
	req.SetBasicAuth("bench@example.com", "pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	tokb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	tok := string(tokb)

	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}

	// Uploads: raw driver, then through the gateway; alternate twice.
	var rawUp, gwUp time.Duration
	for range 2 {
		start := time.Now()
		if _, err := rawDB.GridFSBucket().UploadFromStream(ctx, "raw.bin", bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		rawUp += time.Since(start)
		start = time.Now()
		if status := gatewayUpload(b, gw.URL(), tok, bytes.NewReader(data)); status != 200 {
			b.Fatalf("gateway upload: %d", status)
		}
		gwUp += time.Since(start)
	}

	// Downloads of the same bytes: put an MP3-to-be into the gateway's mp3s
	// bucket (owner = bench user) and into the raw bucket.
	mp3s, _ := gridfs.NewBucket(mp3sDB)
	info, err := mp3s.Upload(ctx, "x.mp3", bytes.NewReader(data), bson.D{{Key: "owner", Value: "bench@example.com"}}, gridfs.UploadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	rawID, err := rawDB.GridFSBucket().UploadFromStream(ctx, "raw.bin", bytes.NewReader(data))
	if err != nil {
		b.Fatal(err)
	}
	var rawDown, gwDown time.Duration
	for range 2 {
		start := time.Now()
		n := rawDownload(b, rawDB, rawID)
		rawDown += time.Since(start)
		if n != int64(size) {
			b.Fatalf("raw download: %d bytes", n)
		}
		start = time.Now()
		req, _ := http.NewRequest("GET", gw.URL()+"/download?fid="+info.ID.Hex(), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		gwDown += time.Since(start)
		if resp.StatusCode != 200 || n != int64(size) {
			b.Fatalf("gateway download: %d, %d bytes", resp.StatusCode, n)
		}
	}

	// Memory: RSS growth of the gateway process during one big upload.
	rssBefore, _ := gw.RSS()
	start := time.Now()
	if status := gatewayUpload(b, gw.URL(), tok, io.LimitReader(zeroReader{}, int64(bigSize))); status != 200 {
		b.Fatalf("big upload: %d", status)
	}
	bigTook := time.Since(start)
	_, peak := gw.RSS()

	mbps := func(n int, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }
	ru, gu := mbps(2*size, rawUp), mbps(2*size, gwUp)
	rd, gd := mbps(2*size, rawDown), mbps(2*size, gwDown)
	b.ReportMetric(gu/ru, "upload_ratio")
	b.ReportMetric(gd/rd, "download_ratio")
	b.ReportMetric(float64(peak-rssBefore)/(1<<20), "rss_growth_MiB")
	b.Logf("upload:   gateway %.1f MB/s, raw driver %.1f MB/s, ratio %.2f (goal >= 0.70)", gu, ru, gu/ru)
	b.Logf("download: gateway %.1f MB/s, raw driver %.1f MB/s, ratio %.2f (goal >= 0.80)", gd, rd, gd/rd)
	b.Logf("memory:   %d MiB upload in %s; gateway RSS %d MiB before, peak %d MiB, growth %d MiB (goal < 64)",
		bigSize>>20, bigTook.Round(time.Second), rssBefore>>20, peak>>20, (peak-rssBefore)>>20)
}

func gatewayUpload(b *testing.B, base, tok string, src io.Reader) int {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		w, err := mw.CreateFormFile("file", "bench.mp4")
		if err == nil {
			_, err = io.Copy(w, src)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	req, _ := http.NewRequest("POST", base+"/upload", pr)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Logf("upload answered %d %q", resp.StatusCode, body)
	}
	return resp.StatusCode
}

func rawDownload(b *testing.B, db *mongo.Database, id any) int64 {
	s, err := db.GridFSBucket(options.GridFSBucket()).OpenDownloadStream(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	n, err := io.Copy(io.Discard, s)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
