package gateway_test

// What a careless or hostile client sends: bodies that never end, part
// headers of megabytes, oversized form fields.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/retention"
	"mp3converter/internal/testenv"
)

// trickle opens a connection and sends a request head, then the start of
// a chunked body, and then nothing more (a body that never ends, one byte
// every few seconds at best). It returns the connection.
func trickle(t *testing.T, addr, head, bodyStart string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "%sTransfer-Encoding: chunked\r\n\r\n", head)
	if bodyStart != "" {
		fmt.Fprintf(conn, "%x\r\n%s\r\n", len(bodyStart), bodyStart)
	}
	return conn
}

// answer reads the response on conn, waiting at most within (the test
// fails instead of hanging when no answer comes).
func answer(t *testing.T, conn net.Conn, within time.Duration) (*http.Response, string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(within))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer within %s: %v", within, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return resp, string(b)
}

// A refusal (401, 403, 413, 415) reaches a client whose body never ends at
// once, and the connection is closed: net/http used to drain the unread
// body before sending the answer, so it never came.
func TestRefusalsReachATricklingClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{maxUpload: 1 << 20})
	addr := strings.TrimPrefix(e.url, "http://")
	tok := e.token(t, "alice@example.com", false)
	const boundary = "b0undary"
	ctype := "Content-Type: multipart/form-data; boundary=" + boundary + "\r\n"
	for _, tc := range []struct {
		name, head, body string
		status           int
		text             string
	}{
		{"upload without a token", "POST /upload HTTP/1.1\r\nHost: x\r\n" + ctype, "--" + boundary + "\r\n", 401, "missing credentials"},
		{"upload with a bad token", "POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n" + ctype, "--", 403, "not authorized"},
		{"login", "POST /login HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + "YTpi" + "\r\n", "x", 401, "invalid credentials"},
		{"a file type refused", "POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok + "\r\n" + ctype,
			"--" + boundary + "\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello", 415, ""},
		{"jobs with a body", "GET /jobs HTTP/1.1\r\nHost: x\r\n", "x", 401, "missing credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			conn := trickle(t, addr, tc.head, tc.body)
			resp, body := answer(t, conn, 10*time.Second)
			if resp.StatusCode != tc.status || (tc.text != "" && body != tc.text) {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, body, tc.status, tc.text)
			}
			if !resp.Close {
				t.Fatalf("the connection stays open for a body the server will never read (Connection: %q)", resp.Header.Get("Connection"))
			}
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			// Closed: a FIN (EOF), or a reset should the kernel still hold
			// bytes the server never read (either way the answer came first).
			if n, err := conn.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after the answer: %d bytes, %v; want the server to close the connection", n, err)
			}
		})
	}
	// A declared length over the limit is refused before any body arrives.
	t.Run("declared too large", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%sContent-Length: %d\r\n\r\n", tok, ctype, 64<<20)
		resp, body := answer(t, conn, 10*time.Second)
		if resp.StatusCode != 413 || !strings.Contains(body, "the limit is 1 MiB") || !resp.Close {
			t.Fatalf("%d %q (close %v), want 413 naming the limit, connection closed", resp.StatusCode, body, resp.Close)
		}
	})
	e.assertNothingStored(t)
}

// Part headers are capped at tens of KiB (the multipart package allows
// 10 MiB per part, and about 30 such uploads at once pushed the gateway
// toward its memory limit); form fields other than the file at 64 KiB.
func TestUploadEnvelopeLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	tok := "Bearer " + e.token(t, "alice@example.com", false)
	const boundary = "b0undary"
	ctype := "multipart/form-data; boundary=" + boundary
	file := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.mp4\"\r\nContent-Type: video/mp4\r\n%s\r\nvideo bytes\r\n--" + boundary + "--\r\n"
	for _, tc := range []struct {
		name, body string
		status     int
		text       string
	}{
		{"a 1 MiB header", fmt.Sprintf(file, "X-Padding: "+strings.Repeat("a", 1<<20)+"\r\n"), 400, "part headers longer than 32 KiB"},
		{"4,000 small headers", fmt.Sprintf(file, strings.Repeat("X-Header-A: bbb\r\n", 4000)), 400, "part headers longer than 32 KiB"},
		{"headers of 8 KiB are fine", fmt.Sprintf(file, "X-Padding: "+strings.Repeat("a", 8<<10)+"\r\n"), 200, "success!"},
		{"a 100 KiB form field", "--" + boundary + "\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\n" + strings.Repeat("n", 100<<10) + "\r\n" +
			strings.TrimPrefix(fmt.Sprintf(file, ""), ""), 400, "a form field other than the file holds more than 64 KiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request(t, "POST", e.url+"/upload", tok, ctype, bytes.NewReader([]byte(tc.body)))
			if r.status != tc.status || !strings.Contains(r.body, tc.text) {
				t.Fatalf("%d %q, want %d %q", r.status, r.body, tc.status, tc.text)
			}
		})
	}
}

// Every request but an authenticated upload has a bounded read time
// (REQUEST_TIMEOUT): the gateway binary answers a request whose body
// trickles once that time is up, and an authenticated upload keeps
// reading well past it (its own UPLOAD_TIMEOUT).
func TestReadTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	amqpURL := testenv.RabbitMQ(t)
	gw := testenv.Start(t, "gateway", testenv.Binary(t, "gateway"), testenv.FreePort(t), map[string]string{
		"AUTH_SVC_ADDRESS": e.authAddr, "MONGODB_URI": testenv.Getenv(t, "MONGODB_URI"), "RABBITMQ_URL": amqpURL,
		"VIDEO_QUEUE": testenv.Queue(t, amqpURL, "video"), "MONGODB_VIDEOS_DB": e.videosDB.Name(),
		"MONGODB_MP3S_DB": e.mp3sDB.Name(), "REQUEST_TIMEOUT": "2s", "UPLOAD_TIMEOUT": "1m",
	})
	addr := strings.TrimPrefix(gw.URL(), "http://")
	tok := e.token(t, "alice@example.com", false)

	// A 200 whose request body never ends: answered once the read time is
	// up (net/http drains a body it was not asked to read before it
	// answers; before the bound it waited for ever).
	conn := trickle(t, addr, "GET /jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+"\r\n", "x")
	if resp, body := answer(t, conn, 20*time.Second); resp.StatusCode != 200 || !strings.HasPrefix(body, "[") {
		t.Fatalf("GET /jobs with a trickling body: %d %q", resp.StatusCode, body)
	}

	// An authenticated upload that sends a little every second for 5 s
	// (past REQUEST_TIMEOUT) completes.
	const boundary = "b0undary"
	conn = trickle(t, addr, "POST /upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+"\r\n"+
		"Content-Type: multipart/form-data; boundary="+boundary+"\r\n",
		"--"+boundary+"\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.mp4\"\r\nContent-Type: video/mp4\r\n\r\n")
	for range 5 {
		time.Sleep(time.Second) // scenario, not evidence: the body trickles in past REQUEST_TIMEOUT
		fmt.Fprintf(conn, "%x\r\n%s\r\n", 4, "data")
	}
	end := "\r\n--" + boundary + "--\r\n"
	fmt.Fprintf(conn, "%x\r\n%s\r\n0\r\n\r\n", len(end), end)
	if resp, body := answer(t, conn, 20*time.Second); resp.StatusCode != 200 || body != "success!" {
		t.Fatalf("slow authenticated upload: %d %q, want 200 success!", resp.StatusCode, body)
	}
}

// Per-user limits: bytes stored (videos and MP3s) and conversions queued
// or converting. Beyond them an upload is refused with a sentence naming
// the limit, and nothing is stored; other users are not affected.
func TestUserQuotas(t *testing.T) {
	t.Parallel()
	t.Run("storage", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{quotaBytes: 1 << 20})
		alice := "Bearer " + e.token(t, "alice@example.com", false)
		upload := func(authz string, size int) result {
			ctype, body := multipartBody(part{field: "f", filename: "a.mp4", ctype: "video/mp4", body: make([]byte, size)})
			return request(t, "POST", e.url+"/upload", authz, ctype, bytes.NewReader(body))
		}
		// An MP3 of alice's counts too.
		if _, err := e.mp3s.Upload(context.Background(), "old.mp3", bytes.NewReader(make([]byte, 300<<10)),
			bson.D{{Key: "owner", Value: "alice@example.com"}}, gridfs.UploadOptions{}); err != nil {
			t.Fatal(err)
		}
		if r := upload(alice, 600<<10); r.status != 200 {
			t.Fatalf("first upload (900 KiB of 1 MiB used after it): %d %q", r.status, r.body)
		}
		files, chunks := e.stored(t)
		for _, size := range []int{200 << 10, 2 << 20} { // one streamed past the quota, one declared over it
			r := upload(alice, size)
			if r.status != 413 || !strings.Contains(r.body, "storage quota of 1 MiB is full") {
				t.Fatalf("upload of %d KiB over the quota: %d %q, want 413 naming the quota", size>>10, r.status, r.body)
			}
		}
		if f, c := e.stored(t); f != files || c != chunks {
			t.Fatalf("a refused upload left files: %d files %d chunks, want %d %d", f, c, files, chunks)
		}
		if r := upload("Bearer "+e.token(t, "bob@example.com", false), 600<<10); r.status != 200 {
			t.Fatalf("bob, whose quota is untouched: %d %q", r.status, r.body)
		}
	})
	t.Run("conversions in flight", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{maxActive: 2})
		alice := "Bearer " + e.token(t, "alice@example.com", false)
		upload := func(authz string) result {
			ctype, body := multipartBody(part{field: "f", filename: "a.mp4", ctype: "video/mp4", body: []byte("video")})
			return request(t, "POST", e.url+"/upload", authz, ctype, bytes.NewReader(body))
		}
		for i := range 2 { // nothing converts here: both stay queued
			if r := upload(alice); r.status != 200 {
				t.Fatalf("upload %d: %d %q", i, r.status, r.body)
			}
		}
		r := upload(alice)
		if r.status != 429 || !strings.Contains(r.body, "2 conversions queued or converting") || r.header.Get("Retry-After") == "" {
			t.Fatalf("third upload: %d %q (Retry-After %q), want 429 naming the limit", r.status, r.body, r.header.Get("Retry-After"))
		}
		var list []map[string]any
		if r := request(t, "GET", e.url+"/jobs", alice, "", nil); r.status != 200 || json.Unmarshal([]byte(r.body), &list) != nil || len(list) != 2 {
			t.Fatalf("jobs after the refusal: %d %q, want 2", r.status, r.body)
		}
		if r := upload("Bearer " + e.token(t, "bob@example.com", false)); r.status != 200 {
			t.Fatalf("bob: %d %q", r.status, r.body)
		}
	})
}

// An MP3 the retention sweeper deleted answers 410 with a sentence, to its
// owner and admins; to anyone else it is as missing as any other (404).
func TestExpiredMP3IsGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	info, err := e.mp3s.Upload(ctx, "a.mp3", bytes.NewReader([]byte("ID3 mp3")), bson.D{{Key: "owner", Value: "alice@example.com"}}, gridfs.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fid := info.ID.Hex()
	alice := "Bearer " + e.token(t, "alice@example.com", false)
	if r := request(t, "GET", e.url+"/download?fid="+fid, alice, "", nil); r.status != 200 {
		t.Fatalf("before expiry: %d", r.status)
	}
	at := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := e.expired.Add(ctx, retention.Tombstone{ID: info.ID, Owner: "alice@example.com", UploadedAt: info.UploadDate, ExpiredAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := e.mp3s.Delete(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who, authz string
		status     int
		body       string
	}{
		{"owner", alice, 410, "this MP3 expired and was deleted on 2027-01-02: upload the video again to convert it anew"},
		{"admin", "Bearer " + e.token(t, "root@example.com", true), 410, "this MP3 expired and was deleted on 2027-01-02: upload the video again to convert it anew"},
		{"another user", "Bearer " + e.token(t, "bob@example.com", false), 404, "not found"},
	} {
		if r := request(t, "GET", e.url+"/download?fid="+fid, tc.authz, "", nil); r.status != tc.status || r.body != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.who, r.status, r.body, tc.status, tc.body)
		}
	}
}
