package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A video sent through the resumable endpoint, its connection broken at
// random offsets and resumed each time from the server's offset, becomes
// the same job, the same MP3 and the same email as the video posted in one
// go to /upload.
func TestResumableUploadMatchesOneShot(t *testing.T) {
	t.Parallel()
	s := startSuite(t)
	email, tok := s.newUser(t, "e2e_tus")
	video := makeVideo(t, 60)
	data, err := os.ReadFile(video)
	if err != nil {
		t.Fatal(err)
	}
	oneShot := s.upload(t, tok, video)

	// E2E_SEED replays the cuts of a run (the seed is logged).
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("E2E_SEED"); v != "" {
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("E2E_SEED: %v", err)
		}
	}
	t.Logf("seed %d: the cuts of the %d-byte upload", seed, len(data))
	rng := rand.New(rand.NewPCG(seed, seed))
	// Each cut ends the bytes sent at an offset of its own, further on
	// than the one before and short of the end.
	var cuts []int
	for len(cuts) < 3 {
		if c := 1 + rng.IntN(len(data)-1); !slices.Contains(cuts, c) {
			cuts = append(cuts, c)
		}
	}
	slices.Sort(cuts)

	tc := tusClient{url: s.gateway.URL(), tok: tok}
	up := tc.create(t, len(data), "holiday.mp4", "video/mp4")
	offset := 0
	for i, cut := range cuts {
		tc.cutPatch(t, up, offset, data[offset:], cut-offset)
		got := tc.offset(t, up)
		if got != cut {
			t.Fatalf("cut %d: the server has %d bytes, the client sent %d", i+1, got, cut)
		}
		t.Logf("cut %d: %d of %d bytes in", i+1, got, len(data))
		offset = got
	}
	resp := tc.do(t, "PATCH", up, bytes.NewReader(data[offset:]),
		"Upload-Offset", strconv.Itoa(offset), "Content-Type", "application/offset+octet-stream")
	if resp.StatusCode != 204 || resp.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("last PATCH: %d, Upload-Offset %q", resp.StatusCode, resp.Header.Get("Upload-Offset"))
	}
	resumed := "/jobs/" + path.Base(up)

	s.waitDone(t, tok, []string{oneShot, resumed}, 3*time.Minute)
	var mp3s [][]byte
	for _, job := range []string{oneShot, resumed} {
		status, mp3 := s.get(t, tok, "/download?fid="+path.Base(job))
		if status != 200 || len(mp3) == 0 {
			t.Fatalf("download of %s: %d, %d bytes", job, status, len(mp3))
		}
		mp3s = append(mp3s, mp3)
	}
	if !bytes.Equal(mp3s[0], mp3s[1]) {
		t.Fatalf("the MP3s differ: %d bytes from /upload, %d from /uploads", len(mp3s[0]), len(mp3s[1]))
	}
	s.waitMailed(t, email, []string{path.Base(oneShot), path.Base(resumed)}, time.Minute)
}

// tusClient is a tus 1.0 client of the gateway, as small as the test needs.
type tusClient struct{ url, tok string }

func (c tusClient) do(t *testing.T, method, path string, body io.Reader, header ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, c.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Authorization", "Bearer "+c.tok)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// create makes an upload of size bytes and returns its path, /uploads/{id}.
func (c tusClient) create(t *testing.T, size int, filename, filetype string) string {
	t.Helper()
	b64 := base64.StdEncoding.EncodeToString
	resp := c.do(t, "POST", "/uploads", nil, "Upload-Length", strconv.Itoa(size),
		"Upload-Metadata", "filename "+b64([]byte(filename))+",filetype "+b64([]byte(filetype)))
	loc := resp.Header.Get("Location")
	i := strings.Index(loc, "/uploads/")
	if resp.StatusCode != 201 || i < 0 {
		t.Fatalf("create: %d, Location %q", resp.StatusCode, loc)
	}
	return loc[i:]
}

// offset is the server's Upload-Offset of the upload.
func (c tusClient) offset(t *testing.T, path string) int {
	t.Helper()
	resp := c.do(t, "HEAD", path, nil)
	n, err := strconv.Atoi(resp.Header.Get("Upload-Offset"))
	if resp.StatusCode != 200 || err != nil {
		t.Fatalf("HEAD %s: %d, Upload-Offset %q", path, resp.StatusCode, resp.Header.Get("Upload-Offset"))
	}
	return n
}

// cutPatch is a PATCH that announces all of rest but sends only its first
// sent bytes before the client's side of the connection closes. It then
// reads whatever the gateway answers, until the gateway closes too: the
// gateway is done with the request, so what it kept is what a HEAD sees.
func (c tusClient) cutPatch(t *testing.T, path string, offset int, rest []byte, sent int) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(c.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(client.Timeout)) // a hang is a failure, as with client
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: %d\r\nContent-Length: %d\r\n\r\n",
		path, conn.RemoteAddr(), c.tok, offset, len(rest))
	if _, err := conn.Write(rest[:sent]); err != nil {
		t.Fatalf("cut PATCH: %v", err)
	}
	conn.(*net.TCPConn).CloseWrite()
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("cut PATCH: waiting for the gateway to close: %v", err)
	}
}
