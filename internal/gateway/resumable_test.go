package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/message"
	"mp3converter/internal/testenv"
)

// tusClient speaks tus 1.0 to the test's gateway as a careful client does.
type tusClient struct {
	t   testing.TB
	url string
	tok string
}

func (e *env) tus(t testing.TB, user string) *tusClient {
	return &tusClient{t: t, url: e.url, tok: e.token(t, user, false)}
}

func tusMetadata(kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+" "+base64.StdEncoding.EncodeToString([]byte(kv[i+1])))
	}
	return strings.Join(parts, ",")
}

func (c *tusClient) do(method, path string, header map[string]string, body io.Reader) result {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	if c.tok != "" {
		req.Header.Set("Authorization", "Bearer "+c.tok)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, string(b), resp.Header}
}

// create makes an upload of size bytes and returns its path.
func (c *tusClient) create(size int, meta string) string {
	c.t.Helper()
	r := c.do("POST", "/uploads", map[string]string{"Upload-Length": strconv.Itoa(size), "Upload-Metadata": meta}, nil)
	if r.status != 201 || !strings.HasPrefix(r.header.Get("Location"), "/uploads/") {
		c.t.Fatalf("create: %d %q, Location %q (want a path)", r.status, r.body, r.header.Get("Location"))
	}
	loc := r.header.Get("Location")
	return loc[strings.Index(loc, "/uploads/"):]
}

func (c *tusClient) offset(path string) int64 {
	c.t.Helper()
	r := c.do("HEAD", path, nil, nil)
	if r.status != 200 {
		c.t.Fatalf("HEAD %s: %d", path, r.status)
	}
	n, err := strconv.ParseInt(r.header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		c.t.Fatalf("HEAD %s: Upload-Offset %q", path, r.header.Get("Upload-Offset"))
	}
	return n
}

func (c *tusClient) patch(path string, offset int64, data []byte) result {
	c.t.Helper()
	return c.do("PATCH", path, map[string]string{"Upload-Offset": strconv.FormatInt(offset, 10),
		"Content-Type": "application/offset+octet-stream"}, bytes.NewReader(data))
}

// cutPatch sends a PATCH announcing all of data but only its first sent
// bytes, then breaks the connection, as a phone that lost its signal.
func (c *tusClient) cutPatch(path string, offset int64, data []byte, sent int) {
	c.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(c.url, "http://"))
	if err != nil {
		c.t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: %d\r\nContent-Length: %d\r\n\r\n", path, c.tok, offset, len(data))
	if _, err := conn.Write(data[:sent]); err != nil {
		c.t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, conn) // the gateway's answer, if any, then its close
	conn.Close()
}

// An upload cut at a random offset resumes from the server's offset: every
// byte that arrived is kept, and the file is the one sent, queued as a
// one-shot upload is (a job whose id is the upload's, the same message).
func TestResumableUploadCutAndResumed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	alice := e.tus(t, "alice@example.com")
	data := make([]byte, 3*gridfs.DefaultChunkSize+4321)
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	path := alice.create(len(data), tusMetadata("filename", "../holiday.mp4", "filetype", "video/mp4"))
	if files, chunks := e.stored(t); files != 0 || chunks != 0 {
		t.Fatalf("a new upload is already stored: %d files, %d chunks", files, chunks)
	}
	var offset int64
	for cuts := 0; cuts < 3; cuts++ {
		rest := data[offset:]
		sent := 1 + rng.IntN(len(rest)-1)
		alice.cutPatch(path, offset, rest, sent)
		// The gateway may still be storing what came when HEAD asks: HEAD
		// waits for the upload's lock.
		got := alice.offset(path)
		if got != offset+int64(sent) {
			t.Fatalf("cut %d: the server has %d bytes, the client sent %d", cuts, got, offset+int64(sent))
		}
		offset = got
	}
	if _, err := e.jobs.Get(context.Background(), strings.TrimPrefix(path, "/uploads/")); err == nil {
		t.Fatal("a job exists before the last byte is in")
	}
	r := alice.patch(path, offset, data[offset:])
	if r.status != 204 || r.header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("last PATCH: %d %q offset %q", r.status, r.body, r.header.Get("Upload-Offset"))
	}
	fid := strings.TrimPrefix(path, "/uploads/")
	j, err := e.jobs.Get(context.Background(), fid)
	if err != nil || j.Status != "queued" || j.Filename != "holiday.mp4" || j.Username != "alice@example.com" {
		t.Fatalf("job of the upload: %+v, %v", j, err)
	}
	msgs := e.drain(t)
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	m, err := message.Decode(msgs[0].Body)
	if err != nil || m.VideoFID != fid || m.Username != "alice@example.com" {
		t.Fatalf("message %s: %+v, %v", msgs[0].Body, m, err)
	}
	videos, _ := gridfs.NewBucket(e.videosDB)
	id, _ := bson.ObjectIDFromHex(fid)
	rc, info, err := videos.Open(context.Background(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(stored, data) || info.Name != "holiday.mp4" {
		t.Fatalf("stored %d bytes named %q, want the %d sent", len(stored), info.Name, len(data))
	}
	// Asked again (its last answer was lost), the upload is whole; a PATCH
	// queues nothing twice.
	if got := alice.offset(path); got != int64(len(data)) {
		t.Fatalf("HEAD after completion: %d", got)
	}
	if r := alice.patch(path, int64(len(data)), nil); r.status != 204 {
		t.Fatalf("empty PATCH at the end: %d %q", r.status, r.body)
	}
	if msgs := e.drain(t); len(msgs) != 0 {
		t.Fatalf("a second message for one upload: %d", len(msgs))
	}
}

// The protocol's edges: discovery without credentials, the expiration
// extension, offsets that do not match, termination.
func TestResumableProtocol(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	anon := &tusClient{t: t, url: e.url}
	r := anon.do("OPTIONS", "/uploads", nil, nil)
	if r.status != 200 || r.header.Get("Tus-Version") != "1.0.0" || r.header.Get("Tus-Max-Size") != strconv.Itoa(64<<20) {
		t.Fatalf("OPTIONS: %d %v", r.status, r.header)
	}
	for _, ext := range []string{"creation", "creation-with-upload", "termination", "expiration"} {
		if !strings.Contains(","+r.header.Get("Tus-Extension")+",", ","+ext+",") {
			t.Errorf("Tus-Extension %q lacks %s", r.header.Get("Tus-Extension"), ext)
		}
	}
	if r := anon.do("POST", "/uploads", map[string]string{"Upload-Length": "10"}, nil); r.status != 401 {
		t.Errorf("create without a token: %d %q", r.status, r.body)
	}

	alice := e.tus(t, "alice@example.com")
	r = alice.do("POST", "/uploads", map[string]string{"Upload-Length": "10", "Upload-Metadata": tusMetadata("filename", "a.mp4")}, nil)
	if r.status != 201 {
		t.Fatalf("create: %d %q", r.status, r.body)
	}
	if exp, err := http.ParseTime(r.header.Get("Upload-Expires")); err != nil || exp.Before(time.Now().Add(23*time.Hour)) {
		t.Errorf("Upload-Expires %q (%v), want about a day on", r.header.Get("Upload-Expires"), err)
	}
	path := r.header.Get("Location")
	path = path[strings.Index(path, "/uploads/"):]
	if r := alice.patch(path, 3, []byte("abc")); r.status != 409 {
		t.Errorf("PATCH at the wrong offset: %d %q, want 409", r.status, r.body)
	}
	if r := alice.do("PATCH", path, map[string]string{"Upload-Offset": "0", "Content-Type": "text/plain"}, strings.NewReader("abc")); r.status != 400 {
		t.Errorf("PATCH with the wrong content type: %d %q, want 400", r.status, r.body)
	}
	if r := alice.patch(path, 0, []byte("0123456789-and-more")); r.status != 413 && r.status != 400 {
		t.Errorf("PATCH past the declared length: %d %q", r.status, r.body)
	}
	if r := alice.patch(path, 0, []byte("01234")); r.status != 204 || r.header.Get("Upload-Expires") == "" {
		t.Fatalf("PATCH: %d %q %v", r.status, r.body, r.header)
	}
	if r := alice.do("HEAD", path, nil, nil); r.status != 200 || r.header.Get("Upload-Length") != "10" || r.header.Get("Upload-Expires") == "" {
		t.Errorf("HEAD: %d %v", r.status, r.header)
	}
	if _, chunks := e.stored(t); chunks != 0 {
		t.Errorf("5 bytes of a 10-byte upload took %d chunks, want 0 (they wait in the upload's state)", chunks)
	}
	if r := alice.do("DELETE", path, nil, nil); r.status != 204 {
		t.Fatalf("DELETE: %d %q", r.status, r.body)
	}
	if r := alice.do("HEAD", path, nil, nil); r.status != 404 {
		t.Errorf("HEAD after DELETE: %d", r.status)
	}
	for _, id := range []string{"nothex", bson.NewObjectID().Hex(), "../jobs"} {
		if r := alice.do("HEAD", "/uploads/"+id, nil, nil); r.status != 404 {
			t.Errorf("HEAD /uploads/%s: %d, want 404", id, r.status)
		}
	}
	if n, err := e.videosDB.Collection("fs.partial").CountDocuments(context.Background(), bson.D{}); err != nil || n != 0 {
		t.Errorf("after DELETE: %d partial uploads left (%v)", n, err)
	}
	e.assertNothingStored(t)
}

// Another user can neither read, append to nor remove someone's upload:
// it does not exist for them.
func TestResumableUploadIsItsOwners(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	alice, bob := e.tus(t, "alice@example.com"), e.tus(t, "bob@example.com")
	path := alice.create(2000, tusMetadata("filename", "a.mp4"))
	if r := alice.patch(path, 0, bytes.Repeat([]byte("a"), 1000)); r.status != 204 {
		t.Fatalf("alice's PATCH: %d %q", r.status, r.body)
	}
	for _, method := range []string{"HEAD", "PATCH", "DELETE"} {
		var r result
		if method == "PATCH" {
			r = bob.patch(path, 1000, bytes.Repeat([]byte("b"), 1000))
		} else {
			r = bob.do(method, path, nil, nil)
		}
		if r.status != 404 {
			t.Errorf("bob's %s of alice's upload: %d %q, want 404", method, r.status, r.body)
		}
	}
	if got := alice.offset(path); got != 1000 {
		t.Fatalf("alice's upload after bob's tries: offset %d, want 1000", got)
	}
	if r := alice.patch(path, 1000, bytes.Repeat([]byte("a"), 1000)); r.status != 204 {
		t.Fatalf("alice's last PATCH: %d %q", r.status, r.body)
	}
	if msgs := e.drain(t); len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
}

// /upload's limits hold: the file size, the content type, the quota (an
// open upload counts by its declared size) and the conversions at once (an
// open upload counts as one).
func TestResumableUploadLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxUpload: 1 << 20, quotaBytes: 1536 << 10, maxActive: 2})
	alice := e.tus(t, "alice@example.com")
	create := func(size int, meta string) result {
		return alice.do("POST", "/uploads", map[string]string{"Upload-Length": strconv.Itoa(size), "Upload-Metadata": meta}, nil)
	}
	if r := create(1<<20+1, ""); r.status != 413 {
		t.Errorf("an upload over MAX_UPLOAD_BYTES: %d %q", r.status, r.body)
	}
	if r := create(100, tusMetadata("filetype", "text/html")); r.status != 415 || !strings.Contains(r.body, "upload a video or audio file") {
		t.Errorf("an upload of text/html: %d %q", r.status, r.body)
	}
	if r := create(0, ""); r.status != 400 || !strings.Contains(r.body, "empty") {
		t.Errorf("an empty upload: %d %q", r.status, r.body)
	}
	if r := alice.do("POST", "/uploads", map[string]string{"Upload-Defer-Length": "1"}, nil); r.status/100 != 4 {
		t.Errorf("an upload of unknown length: %d %q, want refused", r.status, r.body)
	}
	if r := alice.do("POST", "/uploads", map[string]string{"Upload-Length": "-5"}, nil); r.status != 400 {
		t.Errorf("a negative length: %d %q", r.status, r.body)
	}
	// 1 MiB open: half a MiB of quota left.
	first := alice.create(1<<20, tusMetadata("filename", "a.mp4"))
	if r := create(600<<10, ""); r.status != 413 || !strings.Contains(r.body, "quota") {
		t.Errorf("an upload past the quota (an open one counted): %d %q", r.status, r.body)
	}
	_ = alice.create(100, "")
	r := create(100, "")
	if r.status != 429 || !strings.Contains(r.body, "2 resumable uploads open") || r.header.Get("Retry-After") == "" {
		t.Errorf("a third upload at once (USER_MAX_ACTIVE 2): %d %q", r.status, r.body)
	}
	// The ordinary /upload sees the open ones too.
	if r := e.upload(t, alice.tok, part{field: "f", filename: "a.mp4", ctype: "video/mp4", body: []byte("v")}); r.status != 429 {
		t.Errorf("/upload beside two open uploads: %d %q", r.status, r.body)
	}
	if r := alice.do("DELETE", first, nil, nil); r.status != 204 {
		t.Fatalf("DELETE: %d", r.status)
	}
	if r := create(600<<10, ""); r.status != 201 {
		t.Errorf("after the DELETE there is room: %d %q", r.status, r.body)
	}
}

// A last byte that cannot be queued (the broker is down) is not a lost
// upload: the client is told 503, the upload takes its last bytes back,
// and sending them again once the broker is back queues it once.
func TestResumableUploadBrokerDownAtTheEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	alice := e.tus(t, "alice@example.com")
	data := bytes.Repeat([]byte("v"), gridfs.DefaultChunkSize+10)
	path := alice.create(len(data), tusMetadata("filename", "a.mp4"))
	if r := alice.patch(path, 0, data[:1000]); r.status != 204 {
		t.Fatalf("PATCH: %d %q", r.status, r.body)
	}
	e.mqProxy.Down()
	r := alice.patch(path, 1000, data[1000:])
	if r.status != 503 || !strings.Contains(r.body, "could not queue the conversion") {
		t.Fatalf("last PATCH with the broker down: %d %q", r.status, r.body)
	}
	offset := alice.offset(path)
	if offset >= int64(len(data)) || offset < 1000 {
		t.Fatalf("after the failed end: offset %d of %d", offset, len(data))
	}
	if files, _ := e.stored(t); files != 0 {
		t.Fatalf("a video without a queued job is visible: %d files", files)
	}
	e.mqProxy.Up()
	testenv.Eventually(t, 20*time.Second, "the rest accepted after the outage", func() bool {
		r = alice.patch(path, offset, data[offset:])
		return r.status == 204
	})
	fid := strings.TrimPrefix(path, "/uploads/")
	if j, err := e.jobs.Get(context.Background(), fid); err != nil || j.Status != "queued" {
		t.Fatalf("job after the retry: %+v, %v", j, err)
	}
	var got int
	for _, m := range e.drain(t) {
		if c, err := message.Decode(m.Body); err == nil && c.VideoFID == fid {
			got++
		}
	}
	// The failed try's message may have reached the queue (its confirm was
	// what failed): a converter takes a second message of one video as a
	// redelivery.
	if got < 1 || got > 2 {
		t.Fatalf("%d messages for the upload, want 1 (2 at most)", got)
	}
}
