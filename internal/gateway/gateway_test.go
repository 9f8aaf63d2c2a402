package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/auth"
	"mp3converter/internal/authclient"
	"mp3converter/internal/downloadlink"
	"mp3converter/internal/gateway"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/httpx"
	"mp3converter/internal/jobs"
	"mp3converter/internal/message"
	"mp3converter/internal/mq"
	"mp3converter/internal/retention"
	"mp3converter/internal/testenv"
	"mp3converter/internal/token"
)

// env is one gateway wired to real servers: the real auth handler (MySQL),
// RabbitMQ (its own queue), FerretDB (its own databases).
type env struct {
	url      string
	srv      *gateway.Server
	tokens   *token.Issuer
	videosDB *mongo.Database
	mp3sDB   *mongo.Database
	mp3s     *gridfs.Bucket
	jobs     *jobs.Store
	amqpURL  string
	queue    string
	mqProxy  *testenv.Proxy
	authStop func()
	authAddr string // host:port of the test's auth
	ops      *httpx.Ops
	expired  *retention.Tombstones
	storing  <-chan struct{} // receives when the gateway starts storing an upload (see storeSignal)
}

// storeSignal is the gateway's videos bucket, which tells the test when an
// upload begins to be stored (the request got past the checks and its file
// is being read): a send on storing, dropped when nobody listens.
type storeSignal struct {
	*gridfs.Bucket
	storing chan struct{}
}

func (v storeSignal) Upload(ctx context.Context, name string, r io.Reader, meta any, opt gridfs.UploadOptions) (gridfs.FileInfo, error) {
	select {
	case v.storing <- struct{}{}:
	default:
	}
	return v.Bucket.Upload(ctx, name, r, meta, opt)
}

type envOptions struct {
	maxUpload    int64
	downloadIdle time.Duration
	quotaBytes   int64 // USER_QUOTA_BYTES; 0: none
	maxActive    int   // USER_MAX_ACTIVE; 0: none
	publicURL    string
	linkKey      string // DOWNLOAD_LINK_KEY; "": signed links refused
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()

	// auth: the real handler over a fresh MySQL database.
	db := testenv.MySQL(t)
	mc := auth.MySQLConfig{Host: db.Host, Port: db.Port, User: db.User, Password: db.Password, DB: db.Name}
	if _, _, err := auth.Migrate(ctx, mc); err != nil {
		t.Fatal(err)
	}
	store, err := auth.OpenStore(ctx, mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hash, _ := auth.HashPassword("pw", 4)
	for _, u := range []struct {
		email string
		admin bool
	}{{"alice@example.com", false}, {"bob@example.com", false}, {"root@example.com", true}} {
		if err := store.PutUser(ctx, u.email, hash, u.admin); err != nil {
			t.Fatal(err)
		}
	}
	tokens, _ := token.New("gateway-test-secret", time.Hour)
	authn, _ := auth.NewAuthenticator(store, tokens, auth.PasswordOptions{Cost: 4}, log)
	authSrv := httptest.NewServer(auth.NewServer(authn, tokens, httpx.NewOps(httpx.NewRegistry()), log,
		auth.ServerOptions{RequestTimeout: 5 * time.Second, LoginRate: 1000, LoginBurst: 1000}))
	t.Cleanup(authSrv.Close)
	authc, err := authclient.New(strings.TrimPrefix(authSrv.URL, "http://"), 2*time.Second, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}

	videosDB, mp3sDB := testenv.Mongo(t), testenv.Mongo(t)
	videos, err := gridfs.NewBucket(videosDB)
	if err != nil {
		t.Fatal(err)
	}
	mp3s, err := gridfs.NewBucket(mp3sDB)
	if err != nil {
		t.Fatal(err)
	}
	jobStore, err := jobs.NewStore(videosDB)
	if err != nil {
		t.Fatal(err)
	}

	proxied, proxy := testenv.RabbitMQProxy(t)
	realURL := testenv.RabbitMQ(t)
	queue := testenv.Queue(t, realURL, "video")
	broker, err := mq.New(proxied, log, mq.Options{PublishTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })

	if o.maxUpload == 0 {
		o.maxUpload = 64 << 20
	}
	var links *downloadlink.Signer
	if o.linkKey != "" {
		if links, err = downloadlink.NewSigner(o.linkKey); err != nil {
			t.Fatal(err)
		}
	}
	ops := httpx.NewOps(httpx.NewRegistry())
	storing := make(chan struct{}, 1)
	// recordStatuses: every status answered is checked against openapi.json
	// after the tests (TestMain).
	srv := gateway.NewServer(gateway.Deps{
		Auth: authc, Videos: storeSignal{Bucket: videos, storing: storing}, MP3s: mp3s, Jobs: jobStore, Publisher: broker, Ops: ops, Log: log,
		Expired: retention.NewTombstones(mp3sDB), Partials: videos,
	}, gateway.Options{
		VideoQueue: queue, MaxUploadBytes: o.maxUpload, UploadTimeout: time.Minute,
		PublishTimeout: 2 * time.Second, RequestTimeout: 10 * time.Second, DownloadIdleTimeout: o.downloadIdle,
		UserQuotaBytes: o.quotaBytes, UserMaxActive: o.maxActive, PublicURL: o.publicURL, Links: links,
	})
	gw := httptest.NewServer(recordStatuses(srv))
	// Live job updates: the store announces, the gateway listens (bound
	// before the test goes on, so that no event of its is missed).
	jobStore.AnnounceOn(broker.Announce, log)
	listenCtx, stopListening := context.WithCancel(context.Background())
	t.Cleanup(stopListening)
	bound := make(chan struct{})
	var once sync.Once
	go srv.ListenForJobs(listenCtx, func(ctx context.Context, exchange string, h func([]byte), onGap func()) error {
		return broker.Listen(ctx, exchange, h, func() { onGap(); once.Do(func() { close(bound) }) })
	})
	select {
	case <-bound:
	case <-time.After(30 * time.Second):
		t.Fatal("the gateway's event listener never bound its queue")
	}
	t.Cleanup(gw.Close)
	return &env{url: gw.URL, srv: srv, tokens: tokens, videosDB: videosDB, mp3sDB: mp3sDB, mp3s: mp3s, jobs: jobStore,
		amqpURL: realURL, queue: queue, mqProxy: proxy, authStop: authSrv.Close, ops: ops, expired: retention.NewTombstones(mp3sDB),
		authAddr: strings.TrimPrefix(authSrv.URL, "http://"), storing: storing}
}

// uploadsAnswered is the number of uploads the gateway is done with,
// whatever their result (gateway_uploads_total): it counts an upload once
// it has been committed or undone, so nothing of that upload changes after.
func (e *env) uploadsAnswered(t *testing.T) float64 {
	t.Helper()
	families, err := e.ops.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() == "gateway_uploads_total" {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func (e *env) token(t testing.TB, user string, admin bool) string {
	t.Helper()
	tok, err := e.tokens.Issue(user, admin)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type part struct {
	field, filename, ctype string
	body                   []byte
}

func multipartBody(parts ...part) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		if p.filename != "" {
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, p.field, p.filename))
		} else {
			h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q`, p.field))
		}
		if p.ctype != "" {
			h.Set("Content-Type", p.ctype)
		}
		w, _ := mw.CreatePart(h)
		w.Write(p.body)
	}
	mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

type result struct {
	status int
	body   string
	header http.Header
}

func request(t *testing.T, method, url, authz, ctype string, body io.Reader) result {
	t.Helper()
	return requestCtx(context.Background(), t, method, url, authz, ctype, body)
}

// requestCtx is request bounded by ctx: no answer before ctx is done fails
// the test.
func requestCtx(ctx context.Context, t *testing.T, method, url, authz, ctype string, body io.Reader) result {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, string(b), resp.Header}
}

func (e *env) upload(t *testing.T, tok string, parts ...part) result {
	ctype, body := multipartBody(parts...)
	return request(t, "POST", e.url+"/upload", "Bearer "+tok, ctype, bytes.NewReader(body))
}

// stored counts the files and chunks in the videos bucket.
func (e *env) stored(t *testing.T) (files, chunks int64) {
	t.Helper()
	ctx := context.Background()
	files, err := e.videosDB.Collection("fs.files").CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	chunks, err = e.videosDB.Collection("fs.chunks").CountDocuments(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	return files, chunks
}

func (e *env) assertNothingStored(t *testing.T) {
	t.Helper()
	if files, chunks := e.stored(t); files != 0 || chunks != 0 {
		t.Fatalf("left behind: %d files, %d chunks", files, chunks)
	}
	// A withdrawn job is a tombstone, hidden from its owner, for a
	// message that may still arrive (see jobs.Withdrawn).
	if n, err := e.videosDB.Collection("jobs").CountDocuments(context.Background(),
		bson.D{{Key: "status", Value: bson.D{{Key: "$ne", Value: "withdrawn"}}}}); err != nil || n != 0 {
		t.Fatalf("left behind: %d jobs (%v)", n, err)
	}
	if msgs := e.drain(t); len(msgs) != 0 {
		t.Fatalf("published %d messages: %v", len(msgs), msgs)
	}
}

// drain takes every message from the test's video queue.
func (e *env) drain(t *testing.T) []amqp.Delivery {
	t.Helper()
	return testenv.Drain(t, e.amqpURL, e.queue)
}

func basic(u, p string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))
}

func TestLoginForwardsToAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		name, authz string
		status      int
		body        string
	}{
		{"right", basic("alice@example.com", "pw"), 200, ""},
		{"wrong password", basic("alice@example.com", "nope"), 401, "invalid credentials"},
		{"no credentials", "", 401, "missing credentials"},
		{"bearer", "Bearer x", 401, "missing credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request(t, "POST", e.url+"/login", tc.authz, "", nil)
			if r.status != tc.status {
				t.Fatalf("status %d %q, want %d", r.status, r.body, tc.status)
			}
			if tc.status == 200 {
				if c, err := e.tokens.Verify(r.body); err != nil || c.Username != "alice@example.com" {
					t.Fatalf("token %q: %+v %v", r.body, c, err)
				}
			} else if r.body != tc.body {
				t.Fatalf("body %q, want %q", r.body, tc.body)
			}
		})
	}
}

func TestProtectedRoutesNeedAValidToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	other, _ := token.New("another-secret", time.Hour)
	forged, _ := other.Issue("alice@example.com", true)
	routes := []struct{ method, path string }{
		{"POST", "/upload"}, {"GET", "/download?fid=65a1b2c3d4e5f60718293a4b"}, {"GET", "/jobs"}, {"GET", "/jobs/65a1b2c3d4e5f60718293a4b"},
	}
	for _, rt := range routes {
		for _, tc := range []struct {
			name, authz string
			status      int
			body        string
		}{
			{"no token", "", 401, "missing credentials"},
			{"empty bearer", "Bearer ", 401, "missing credentials"},
			{"garbage", "Bearer garbage", 403, "not authorized"},
			{"forged", "Bearer " + forged, 403, "not authorized"},
		} {
			t.Run(rt.path+"/"+tc.name, func(t *testing.T) {
				r := request(t, rt.method, e.url+rt.path, tc.authz, "", nil)
				if r.status != tc.status || r.body != tc.body {
					t.Fatalf("%d %q, want %d %q", r.status, r.body, tc.status, tc.body)
				}
			})
		}
	}
	t.Run("huge header", func(t *testing.T) {
		r := request(t, "GET", e.url+"/jobs", "Bearer "+strings.Repeat("a", 2<<20), "", nil)
		if r.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("status %d, want 431", r.status)
		}
	})
}

func TestUploadStoresQueuesAndListsJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tok := e.token(t, "alice@example.com", false)
	video := bytes.Repeat([]byte("not really a video, but bytes "), 40000) // ~1.2 MB, several chunks
	r := e.upload(t, tok, part{field: "anything", filename: `C:\clips\holiday.mp4`, ctype: "video/mp4", body: video},
		part{field: "note", body: []byte("plain form fields are ignored")})
	if r.status != 200 || r.body != "success!" {
		t.Fatalf("upload: %d %q", r.status, r.body)
	}
	loc := r.header.Get("Location")
	fid := strings.TrimPrefix(loc, "/jobs/")
	if !strings.HasPrefix(loc, "/jobs/") || len(fid) != 24 {
		t.Fatalf("Location = %q", loc)
	}

	// The message: the original's JSON, persistent, on the video queue.
	msgs := e.drain(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	var m map[string]any
	if err := json.Unmarshal(msgs[0].Body, &m); err != nil {
		t.Fatal(err)
	}
	if m["video_fid"] != fid || m["mp3_fid"] != nil || m["username"] != "alice@example.com" {
		t.Fatalf("message = %s", msgs[0].Body)
	}
	if _, ok := m["mp3_fid"]; !ok {
		t.Fatalf("message lacks mp3_fid: %s", msgs[0].Body)
	}
	if msgs[0].DeliveryMode != amqp.Persistent {
		t.Fatalf("delivery mode %d, want persistent", msgs[0].DeliveryMode)
	}

	// The video, intact, with its owner and name.
	videos, _ := gridfs.NewBucket(e.videosDB)
	id, _ := bson.ObjectIDFromHex(fid)
	rc, info, err := videos.Open(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, video) || info.Name != "holiday.mp4" {
		t.Fatalf("stored %d bytes named %q, want %d bytes named holiday.mp4", len(got), info.Name, len(video))
	}
	if owner, _ := info.Metadata.Lookup("owner").StringValueOK(); owner != "alice@example.com" {
		t.Fatalf("metadata = %v", info.Metadata)
	}

	// The job, for alice only.
	r = request(t, "GET", e.url+loc, "Bearer "+tok, "", nil)
	var job map[string]any
	if err := json.Unmarshal([]byte(r.body), &job); err != nil || r.status != 200 {
		t.Fatalf("job: %d %q", r.status, r.body)
	}
	if job["id"] != fid || job["status"] != "queued" || job["filename"] != "holiday.mp4" || job["video_fid"] != fid || job["mp3_fid"] != nil {
		t.Fatalf("job = %v", job)
	}
	for _, k := range []string{"progress", "error", "created_at", "updated_at"} {
		if _, ok := job[k]; !ok {
			t.Fatalf("job lacks %q: %v", k, job)
		}
	}
	bob := e.token(t, "bob@example.com", false)
	if r := request(t, "GET", e.url+loc, "Bearer "+bob, "", nil); r.status != 404 {
		t.Fatalf("bob reads alice's job: %d", r.status)
	}
	if r := request(t, "GET", e.url+"/jobs", "Bearer "+bob, "", nil); r.status != 200 || strings.TrimSpace(r.body) != "[]" {
		t.Fatalf("bob's jobs: %d %q", r.status, r.body)
	}
	// Newest first.
	e.upload(t, tok, part{field: "f", filename: "second.webm", ctype: "video/webm", body: []byte("xyz")})
	r = request(t, "GET", e.url+"/jobs", "Bearer "+tok, "", nil)
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.body), &list); err != nil || len(list) != 2 || list[0]["filename"] != "second.webm" {
		t.Fatalf("jobs = %d %q", r.status, r.body)
	}
}

// GET /jobs pages: limit (default 100, at most 1000) and before (the last
// id of the previous page); a full page links to the next one.
func TestListJobsPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var want []string // newest first
	for i := range 5 {
		id := bson.NewObjectID().Hex()
		if err := e.jobs.Create(ctx, jobs.Job{ID: id, Username: "alice@example.com", Filename: fmt.Sprintf("%d.mp4", i),
			VideoFID: id, CreatedAt: base.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
		want = append([]string{id}, want...)
	}
	alice := "Bearer " + e.token(t, "alice@example.com", false)
	var got []string
	next := "/jobs?limit=2"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatalf("more pages than jobs: %v", got)
		}
		r := request(t, "GET", e.url+next, alice, "", nil)
		var page []jobs.Job
		if err := json.Unmarshal([]byte(r.body), &page); r.status != 200 || err != nil {
			t.Fatalf("GET %s = %d %q", next, r.status, r.body)
		}
		for _, j := range page {
			got = append(got, j.ID)
		}
		next = ""
		if link := r.header.Get("Link"); link != "" {
			u, rel, ok := strings.Cut(link, ">; ")
			if !ok || rel != `rel="next"` || !strings.HasPrefix(u, "</jobs?") {
				t.Fatalf("Link = %q", link)
			}
			next = strings.TrimPrefix(u, "<")
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("paged %v, want %v", got, want)
	}
	if r := request(t, "GET", e.url+"/jobs", alice, "", nil); r.header.Get("Link") != "" || strings.Count(r.body, `"id"`) != 5 {
		t.Fatalf("default page: Link %q, body %q", r.header.Get("Link"), r.body)
	}

	// With PUBLIC_URL the link is absolute, as a client behind a proxy needs it.
	pub := newEnv(t, envOptions{publicURL: "https://mp3.example.com/"})
	if err := pub.jobs.Create(ctx, jobs.Job{ID: want[0], Username: "alice@example.com", VideoFID: want[0], CreatedAt: base}); err != nil {
		t.Fatal(err)
	}
	alice = "Bearer " + pub.token(t, "alice@example.com", false)
	if link := request(t, "GET", pub.url+"/jobs?limit=1", alice, "", nil).header.Get("Link"); !strings.HasPrefix(link, "<https://mp3.example.com/jobs?") {
		t.Fatalf("Link with PUBLIC_URL = %q", link)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "limit=-1", "before=nope", "before=" + bson.NewObjectID().Hex()} {
		r := request(t, "GET", e.url+"/jobs?"+q, alice, "", nil)
		if r.status != 400 {
			t.Errorf("GET /jobs?%s = %d %q, want 400", q, r.status, r.body)
		}
	}
	bob := "Bearer " + e.token(t, "bob@example.com", false)
	if r := request(t, "GET", e.url+"/jobs?before="+want[0], bob, "", nil); r.status != 400 || strings.Contains(r.body, "alice") {
		t.Errorf("bob paging after alice's job = %d %q, want 400", r.status, r.body)
	}
}

func TestUploadRefusesBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxUpload: 1 << 20})
	tok := e.token(t, "alice@example.com", false)
	video := part{field: "file", filename: "a.mp4", ctype: "video/mp4", body: []byte("some video bytes")}

	tests := []struct {
		name   string
		send   func() result
		status int
		body   string
	}{
		{"no file", func() result { return e.upload(t, tok, part{field: "x", body: []byte("y")}) }, 400, "exactly 1 file required"},
		{"nothing at all", func() result { return e.upload(t, tok) }, 400, "exactly 1 file required"},
		{"two files", func() result { return e.upload(t, tok, video, video) }, 400, "exactly 1 file required"},
		{"empty file", func() result {
			return e.upload(t, tok, part{field: "file", filename: "a.mp4", ctype: "video/mp4"})
		}, 400, "the file is empty"},
		{"not multipart", func() result {
			return request(t, "POST", e.url+"/upload", "Bearer "+tok, "application/json", strings.NewReader(`{"file":"x"}`))
		}, 400, "exactly 1 file required"},
		{"no content type", func() result {
			return request(t, "POST", e.url+"/upload", "Bearer "+tok, "", strings.NewReader("raw"))
		}, 400, "exactly 1 file required"},
		{"wrong boundary", func() result {
			_, body := multipartBody(video)
			return request(t, "POST", e.url+"/upload", "Bearer "+tok, "multipart/form-data; boundary=nottheone", bytes.NewReader(body))
		}, 400, ""},
		{"truncated body", func() result {
			ctype, body := multipartBody(video)
			return request(t, "POST", e.url+"/upload", "Bearer "+tok, ctype, bytes.NewReader(body[:len(body)-20]))
		}, 400, "malformed or incomplete multipart body"},
		{"text file", func() result {
			return e.upload(t, tok, part{field: "file", filename: "notes.txt", ctype: "text/plain", body: []byte("hi")})
		}, 415, ""},
		{"too large", func() result {
			return e.upload(t, tok, part{field: "file", filename: "big.mp4", ctype: "video/mp4", body: make([]byte, 2<<20)})
		}, 413, "file too large: the limit is 1 MiB"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.send()
			if r.status != tc.status || (tc.body != "" && r.body != tc.body) {
				t.Fatalf("%d %q, want %d %q", r.status, r.body, tc.status, tc.body)
			}
			e.assertNothingStored(t)
		})
	}
}

// rawUpload starts an upload of a size-byte file on a bare connection and
// sends the given fraction of its body (the headers announce all of it).
func (e *env) rawUpload(t *testing.T, tok string, size int, fraction float64) net.Conn {
	t.Helper()
	ctype, body := multipartBody(part{field: "f", filename: "a.mp4", ctype: "video/mp4", body: make([]byte, size)})
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", tok, ctype, len(body))
	if _, err := conn.Write(body[:int(float64(len(body))*fraction)]); err != nil {
		t.Fatal(err)
	}
	return conn
}

// A client that disconnects mid-upload leaves nothing behind.
func TestUploadClientDisconnects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tok := e.token(t, "alice@example.com", false)
	conn := e.rawUpload(t, tok, 4<<20, 0.5) // half the file, then gone
	select {
	case <-e.storing:
	case <-time.After(10 * time.Second):
		t.Fatal("the gateway did not start storing the upload")
	}
	conn.Close()
	// Counted once the gateway has undone what it stored.
	testenv.Eventually(t, 10*time.Second, "the gateway to give the upload up", func() bool { return e.uploadsAnswered(t) == 1 })
	e.assertNothingStored(t)
}

// A client that sends the whole file and hangs up before the answer still
// gets a consistent upload: video, job and message all kept, never a video
// or job without its message (the commit does not depend on the client).
func TestUploadClientLeavesAfterSending(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tok := e.token(t, "alice@example.com", false)
	e.rawUpload(t, tok, 1<<20, 1).Close()

	var msgs []amqp.Delivery
	testenv.Eventually(t, 10*time.Second, "the upload to be committed", func() bool {
		msgs = append(msgs, e.drain(t)...)
		return len(msgs) > 0
	})
	// The gateway is done with the upload (counted): nothing more of it
	// will land.
	testenv.Eventually(t, 10*time.Second, "the gateway to be done with the upload", func() bool { return e.uploadsAnswered(t) == 1 })
	msgs = append(msgs, e.drain(t)...)
	files, _ := e.stored(t)
	list, err := e.jobs.List(context.Background(), "alice@example.com", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || files != 1 || len(list) != 1 || list[0].Status != jobs.Queued {
		t.Fatalf("after the client left: %d messages, %d videos, jobs %+v; want one of each, queued", len(msgs), files, list)
	}
	var m message.Conversion
	if err := json.Unmarshal(msgs[0].Body, &m); err != nil || m.VideoFID != list[0].ID {
		t.Fatalf("message %s (%v) is not about job %s", msgs[0].Body, err, list[0].ID)
	}
}

// Broker down: 503, and neither video nor job stays; back up: works again
// without restarting anything.
func TestUploadWhenBrokerIsDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tok := e.token(t, "alice@example.com", false)
	video := part{field: "file", filename: "a.mp4", ctype: "video/mp4", body: []byte("bytes")}
	if r := e.upload(t, tok, video); r.status != 200 {
		t.Fatalf("before outage: %d %q", r.status, r.body)
	}
	e.drain(t)
	e.videosDB.Collection("jobs").DeleteMany(context.Background(), bson.D{})
	e.videosDB.Collection("fs.files").DeleteMany(context.Background(), bson.D{})
	e.videosDB.Collection("fs.chunks").DeleteMany(context.Background(), bson.D{})

	e.mqProxy.Down()
	// The answer comes within a bound, or the request fails the test.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ctype, body := multipartBody(video)
	r := requestCtx(ctx, t, "POST", e.url+"/upload", "Bearer "+tok, ctype, bytes.NewReader(body))
	if r.status != 503 || r.body != "could not queue the conversion, try again later" {
		t.Fatalf("during outage: %d %q", r.status, r.body)
	}
	e.assertNothingStored(t)

	e.mqProxy.Up()
	testenv.Eventually(t, 20*time.Second, "an upload accepted after the outage", func() bool {
		r = e.upload(t, tok, video)
		if r.status != 200 {
			t.Logf("after outage: %d %q", r.status, r.body)
		}
		return r.status == 200
	})
	if msgs := e.drain(t); len(msgs) != 1 {
		t.Fatalf("after outage: %d messages, want 1", len(msgs))
	}
}

func TestAuthDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tok := e.token(t, "alice@example.com", false)
	e.authStop()
	for _, path := range []string{"/jobs", "/download?fid=65a1b2c3d4e5f60718293a4b"} {
		r := request(t, "GET", e.url+path, "Bearer "+tok, "", nil)
		if r.status != 503 || r.body != "auth service unavailable, try again later" {
			t.Fatalf("%s with auth down: %d %q", path, r.status, r.body)
		}
	}
	if r := request(t, "POST", e.url+"/login", basic("alice@example.com", "pw"), "", nil); r.status != 503 {
		t.Fatalf("login with auth down: %d %q", r.status, r.body)
	}
}

// A client that stops reading a download is dropped after the idle
// timeout, rather than holding a goroutine and a database cursor for ever.
func TestDownloadStalledClientIsDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{downloadIdle: time.Second})
	const size = 32 << 20 // far more than the socket buffers hold
	info, err := e.mp3s.Upload(context.Background(), "big.mp3", io.LimitReader(zeros{}, size),
		bson.D{{Key: "owner", Value: "alice@example.com"}}, gridfs.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /download?fid=%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", info.ID.Hex(), e.token(t, "alice@example.com", false))
	// Stalled: reads nothing until the gateway has given the download up
	// (the handler returned, counted by the middleware).
	testenv.Eventually(t, 30*time.Second, "the gateway to drop the stalled download", func() bool {
		return testenv.Metric(t, e.ops.Registry, "http_requests_total",
			map[string]string{"method": "GET", "route": "/download", "code": "200"}) == 1
	})
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	n, err := io.Copy(io.Discard, conn) // what the kernels had buffered, then EOF or a reset
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after %d bytes the connection is still open, idle", n)
	}
	if n >= size {
		t.Fatalf("read %d bytes, the whole file: the stalled download was not dropped", n)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestDownload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	mp3 := bytes.Repeat([]byte("ID3 fake mp3 frames "), 30000) // ~600 kB, 3 chunks
	info, err := e.mp3s.Upload(ctx, "x.mp3", bytes.NewReader(mp3), bson.D{{Key: "owner", Value: "alice@example.com"}}, gridfs.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fid := info.ID.Hex()
	videos, _ := gridfs.NewBucket(e.videosDB)
	vinfo, err := videos.Upload(ctx, "v.mp4", strings.NewReader("video"), bson.D{{Key: "owner", Value: "alice@example.com"}}, gridfs.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	alice := "Bearer " + e.token(t, "alice@example.com", false)
	bob := "Bearer " + e.token(t, "bob@example.com", false)
	root := "Bearer " + e.token(t, "root@example.com", true)

	for _, tc := range []struct {
		name, query, authz string
		status             int
		body               string
	}{
		{"no fid", "", alice, 400, "fid is required"},
		{"empty fid", "?fid=", alice, 400, "fid is required"},
		{"23 hex", "?fid=" + fid[:23], alice, 400, "fid must be a 24-digit hex id"},
		{"25 hex", "?fid=" + fid + "a", alice, 400, "fid must be a 24-digit hex id"},
		{"non-hex", "?fid=zzzzzzzzzzzzzzzzzzzzzzzz", alice, 400, "fid must be a 24-digit hex id"},
		{"unknown", "?fid=65a1b2c3d4e5f60718293a4b", alice, 404, "not found"},
		{"a video id", "?fid=" + vinfo.ID.Hex(), alice, 404, "not found"},
		{"another user's", "?fid=" + fid, bob, 404, "not found"},
		{"owner", "?fid=" + fid, alice, 200, ""},
		{"admin", "?fid=" + fid, root, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request(t, "GET", e.url+"/download"+tc.query, tc.authz, "", nil)
			if r.status != tc.status {
				t.Fatalf("%d %q, want %d", r.status, r.body, tc.status)
			}
			if tc.status != 200 {
				if r.body != tc.body {
					t.Fatalf("body %q, want %q", r.body, tc.body)
				}
				return
			}
			if r.body != string(mp3) {
				t.Fatalf("got %d bytes, want %d", len(r.body), len(mp3))
			}
			if ct := r.header.Get("Content-Type"); ct != "audio/mpeg" {
				t.Fatalf("Content-Type %q", ct)
			}
			if cd := r.header.Get("Content-Disposition"); cd != `attachment; filename=`+fid+`.mp3` {
				t.Fatalf("Content-Disposition %q", cd)
			}
			if cl := r.header.Get("Content-Length"); cl != fmt.Sprint(len(mp3)) {
				t.Fatalf("Content-Length %q", cl)
			}
		})
	}

	t.Run("range", func(t *testing.T) {
		for _, rg := range []struct {
			header     string
			start, end int // inclusive
		}{{"bytes=0-9", 0, 9}, {"bytes=261100-261200", 261100, 261200}, {fmt.Sprintf("bytes=-%d", 5), len(mp3) - 5, len(mp3) - 1}} {
			req, _ := http.NewRequest("GET", e.url+"/download?fid="+fid, nil)
			req.Header.Set("Authorization", alice)
			req.Header.Set("Range", rg.header)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 206 || !bytes.Equal(b, mp3[rg.start:rg.end+1]) {
				t.Fatalf("%s: %d, %d bytes", rg.header, resp.StatusCode, len(b))
			}
			want := fmt.Sprintf("bytes %d-%d/%d", rg.start, rg.end, len(mp3))
			if cr := resp.Header.Get("Content-Range"); cr != want {
				t.Fatalf("Content-Range %q, want %q", cr, want)
			}
		}
		req, _ := http.NewRequest("GET", e.url+"/download?fid="+fid, nil)
		req.Header.Set("Authorization", alice)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", len(mp3)+10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Fatalf("unsatisfiable range: %d", resp.StatusCode)
		}
	})

	// 2,000 one-byte ranges cost 2,000 storage reads: past a few, the
	// whole file is served instead (200), as common web servers do.
	t.Run("many ranges", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.url+"/download?fid="+fid, nil)
		req.Header.Set("Authorization", alice)
		req.Header.Set("Range", "bytes="+strings.TrimSuffix(strings.Repeat("1-1,", 2000), ","))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(b, mp3) {
			t.Fatalf("2000 ranges: %d with %d bytes, want 200 with the whole %d", resp.StatusCode, len(b), len(mp3))
		}
	})
	// Overlapping ranges are answered merged: two parts, not four.
	t.Run("overlapping ranges", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.url+"/download?fid="+fid, nil)
		req.Header.Set("Authorization", alice)
		req.Header.Set("Range", "bytes=300000-300099,0-9,5-19,300050-300199")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if resp.StatusCode != 206 || mt != "multipart/byteranges" {
			t.Fatalf("%d %s, want 206 multipart/byteranges", resp.StatusCode, mt)
		}
		mr := multipart.NewReader(resp.Body, params["boundary"])
		var parts []string
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(p)
			parts = append(parts, p.Header.Get("Content-Range"))
			var start, end int
			fmt.Sscanf(p.Header.Get("Content-Range"), "bytes %d-%d/", &start, &end)
			if !bytes.Equal(b, mp3[start:end+1]) {
				t.Fatalf("part %s: wrong bytes", p.Header.Get("Content-Range"))
			}
		}
		want := []string{fmt.Sprintf("bytes 0-19/%d", len(mp3)), fmt.Sprintf("bytes 300000-300199/%d", len(mp3))}
		if fmt.Sprint(parts) != fmt.Sprint(want) {
			t.Fatalf("parts %v, want %v", parts, want)
		}
	})
}

func TestOpsEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	if r := request(t, "GET", e.url+"/healthz", "", "", nil); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
	// Readiness and metrics are on the ops port only, not on the port the
	// Ingress exposes.
	for _, path := range []string{"/readyz", "/metrics"} {
		if r := request(t, "GET", e.url+path, "", "", nil); r.status != 404 {
			t.Errorf("public %s: %d, want 404", path, r.status)
		}
	}
	ops := httptest.NewServer(httpx.OpsHandler(e.ops, slog.New(slog.DiscardHandler)))
	t.Cleanup(ops.Close)
	if r := request(t, "GET", ops.URL+"/metrics", "", "", nil); r.status != 200 || !strings.Contains(r.body, "gateway_upload_bytes_total") {
		t.Fatalf("ops /metrics %d", r.status)
	}
	if r := request(t, "GET", ops.URL+"/readyz", "", "", nil); r.status != 200 {
		t.Fatalf("ops /readyz %d %q", r.status, r.body)
	}
}

// closedAddr is a host:port where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// The gateway binary's /readyz works with either auth: any answer from
// AUTH_SVC_ADDRESS proves auth is up (the original auth has no /healthz;
// Flask answers 404), while no answer or a 5xx keeps the gateway unready.
func TestReadyzWithEitherAuth(t *testing.T) {
	t.Parallel()
	mongoURI := testenv.Getenv(t, "MONGODB_URI")
	amqpURL := testenv.RabbitMQ(t)
	bin := testenv.Binary(t, "gateway")

	peer := func(status int, contentType, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			io.WriteString(w, body)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	tokens, _ := token.New("readyz-test-secret", time.Hour)
	log := slog.New(slog.DiscardHandler)
	authn, err := auth.NewAuthenticator(nil, tokens, auth.PasswordOptions{Cost: 4}, log)
	if err != nil {
		t.Fatal(err)
	}
	goAuth := httptest.NewServer(auth.NewServer(authn, tokens, httpx.NewOps(httpx.NewRegistry()), log,
		auth.ServerOptions{RequestTimeout: 5 * time.Second, LoginRate: 10, LoginBurst: 10}))
	t.Cleanup(goAuth.Close)

	for _, tc := range []struct {
		name, authAddr string
		ready          bool
	}{
		{"original auth, no /healthz", peer(404, "text/html; charset=utf-8",
			"<!doctype html>\n<title>404 Not Found</title>\n<h1>Not Found</h1>"), true},
		{"go auth", strings.TrimPrefix(goAuth.URL, "http://"), true},
		{"auth down", closedAddr(t), false},
		{"auth answering 500", peer(500, "text/html; charset=utf-8", "<h1>Internal Server Error</h1>"), false},
		{"auth answering 503", peer(503, "text/plain", "service unavailable"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gw := testenv.Start(t, "gateway", bin, testenv.FreePort(t), map[string]string{
				"AUTH_SVC_ADDRESS": tc.authAddr, "MONGODB_URI": mongoURI, "RABBITMQ_URL": amqpURL,
				"VIDEO_QUEUE": testenv.Queue(t, amqpURL, "video"), "MONGODB_VIDEOS_DB": testenv.Mongo(t).Name(),
				"MONGODB_MP3S_DB": testenv.Mongo(t).Name(),
			})
			// Wait for the other dependencies, then judge auth's check alone.
			var r result
			var checks map[string]string
			testenv.Eventually(t, 30*time.Second, "MongoDB and RabbitMQ to be ready", func() bool {
				r = request(t, "GET", gw.OpsURL()+"/readyz", "", "", nil)
				var body struct {
					Checks map[string]string `json:"checks"`
				}
				if err := json.Unmarshal([]byte(r.body), &body); err != nil {
					t.Fatalf("/readyz: %d %q: %v", r.status, r.body, err)
				}
				checks = body.Checks
				for name, state := range checks {
					if name != "auth" && state != "ok" {
						return false
					}
				}
				return true
			})
			want, wantCheck := http.StatusServiceUnavailable, "unavailable"
			if tc.ready {
				want, wantCheck = http.StatusOK, "ok"
			}
			if r.status != want || checks["auth"] != wantCheck {
				t.Fatalf("/readyz = %d %s, want %d with auth %q", r.status, r.body, want, wantCheck)
			}
		})
	}
}
