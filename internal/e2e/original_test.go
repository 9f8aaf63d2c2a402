package e2e

// Tests with the original's own libraries: the scripts in testdata/original
// play the original's services with pymongo (GridFS), pika and PyJWT, run
// by Debian's /usr/bin/python3, beside the Go binaries on the same broker
// and the same MongoDB. The scripts are written from the suite's documented
// contract (README.md), not taken from the original. The tests skip only
// when those Python packages are missing (deploy/stack.sh up installs them).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/testenv"
)

// origPython is Debian's python3 with the original's libraries (or a skip).
func origPython(t *testing.T) string {
	t.Helper()
	return testenv.Python(t, "pymongo", "bson", "gridfs", "pika", "jwt")
}

func origScript(name string) string { return filepath.Join("testdata", "original", name) }

// origUpload does what the original gateway does on upload: it stores file
// in the suite's videos database with pymongo's GridFS (no metadata) and
// announces it on the video queue with pika. It returns the video's id.
func (s *suite) origUpload(t *testing.T, py, username, file string) string {
	t.Helper()
	return testenv.RunPython(t, py, origScript("gateway_upload.py"), nil,
		"--mongodb-uri", testenv.Getenv(t, "MONGODB_URI"), "--db", s.videosDB.Name(),
		"--amqp-url", s.amqpURL, "--queue", s.videoQueue, "--username", username, file)
}

// origConvert does what the original converter does with the next message
// on the video queue: it reads the video with pymongo's GridFS, stores mp3
// under a new id with no metadata in the mp3s database and announces it on
// the mp3 queue with pika. It returns the MP3's id.
func (s *suite) origConvert(t *testing.T, py, mp3 string) string {
	t.Helper()
	return testenv.RunPython(t, py, origScript("converter_publish.py"), nil,
		"--mongodb-uri", testenv.Getenv(t, "MONGODB_URI"),
		"--videos-db", s.videosDB.Name(), "--mp3s-db", s.mp3sDB.Name(), "--amqp-url", s.amqpURL,
		"--video-queue", s.videoQueue, "--mp3-queue", s.mp3Queue, "--wait", "60", mp3)
}

// origGridSum is what gridfs_read.py reports of a file: the length in its files
// document, the bytes it read and their SHA-256.
type origGridSum struct {
	Length int64  `json:"length"`
	Read   int64  `json:"read"`
	SHA256 string `json:"sha256"`
}

// origRead reads the file fid of db with pymongo's GridFS.
func origRead(t *testing.T, py string, db *mongo.Database, fid string) origGridSum {
	t.Helper()
	out := testenv.RunPython(t, py, origScript("gridfs_read.py"), nil,
		"--mongodb-uri", testenv.Getenv(t, "MONGODB_URI"), "--db", db.Name(), fid)
	var g origGridSum
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("gridfs_read.py printed %q: %v", out, err)
	}
	return g
}

// origSum is the origGridSum that b's bytes must have.
func origSum(b []byte) origGridSum {
	h := sha256.Sum256(b)
	return origGridSum{Length: int64(len(b)), Read: int64(len(b)), SHA256: hex.EncodeToString(h[:])}
}

// origToken mints a token with PyJWT as the original auth does.
func origToken(t *testing.T, py, secret, username string) string {
	t.Helper()
	return testenv.RunPython(t, py, origScript("auth_token.py"), map[string]string{"JWT_SECRET": secret}, username)
}

// origClaims decodes a JWT's payload (without verifying it).
func origClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("%q is not a JWT", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil {
		t.Fatalf("JWT payload of %q: %v", tok, err)
	}
	return c
}

// origAuth is auth_server.py: the original auth as the contract describes
// it, on a port of its own.
type origAuth struct {
	addr string          // host:port
	log  *testenv.Buffer // its stderr: a line per request ("POST /validate HTTP/1.1" 200 -), tracebacks
}

// startOrigAuth starts auth_server.py with the given users (email →
// password) and JWT secret; it is stopped in t.Cleanup.
func startOrigAuth(t *testing.T, py, secret string, users map[string]string) *origAuth {
	t.Helper()
	args := []string{"--port", "0"}
	for email, pw := range users {
		args = append(args, "--user", email+":"+pw)
	}
	cmd := testenv.PythonCommand(context.Background(), py, origScript("auth_server.py"),
		map[string]string{"JWT_SECRET": secret}, args...)
	a := &origAuth{log: &testenv.Buffer{}}
	stdout := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = stdout, a.log
	// The server exits when its stdin closes: at cleanup, or when the test
	// binary dies without running its cleanups.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start auth_server.py: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("--- auth_server.py output (last 4 KiB) ---\n%s", a.log.Tail(4096))
		}
	})
	listening := testenv.Poll(30*time.Second, func() bool {
		if line, _, ok := strings.Cut(stdout.String(), "\n"); ok {
			a.addr = strings.TrimPrefix(line, "listening on ")
			return true
		}
		select {
		case <-done:
			t.Fatalf("auth_server.py exited at start:\n%s", a.log.String())
		default:
		}
		return false
	})
	if !listening {
		t.Fatalf("auth_server.py did not start listening:\n%s", a.log.String())
	}
	return a
}

// origDownload is GET /download?fid= with tok; it returns the status, the body
// and the Content-Disposition header.
func (s *suite) origDownload(t *testing.T, tok, fid string) (int, []byte, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.gateway.URL()+"/download?fid="+fid, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header.Get("Content-Disposition")
}

// origBrief is a response body for a failure message: quoted, at most 80 bytes
// of it (an MP3 is no message).
func origBrief(b []byte) string {
	if len(b) > 80 {
		return fmt.Sprintf("%q… (%d bytes)", b[:80], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// origMP3Seconds is an MP3's duration as ffprobe reports it (failing the test
// when the bytes are no MP3).
func origMP3Seconds(t *testing.T, mp3 []byte) float64 {
	t.Helper()
	f := filepath.Join(t.TempDir(), "download.mp3")
	if err := os.WriteFile(f, mp3, 0o600); err != nil {
		t.Fatal(err)
	}
	p := ffprobe(t, f)
	if p.Format.FormatName != "mp3" || len(p.Streams) != 1 || p.Streams[0].CodecName != "mp3" {
		t.Fatalf("downloaded file is %+v, want one mp3 stream", p)
	}
	d, _ := strconv.ParseFloat(p.Format.Duration, 64)
	return d
}

// origMakeMP3 writes an MP3 of the given seconds (a 660 Hz tone), standing in
// for what the original converter makes of a video.
func origMakeMP3(t *testing.T, seconds int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "original.mp3")
	out, err := exec.Command(testenv.Getenv(t, "FFMPEG_PATH"), "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=660:duration=%d", seconds),
		"-c:a", "libmp3lame", "-b:a", "128k", p).CombinedOutput()
	if err != nil {
		t.Fatalf("make mp3: %v\n%s", err, out)
	}
	return p
}

// origMailedFID waits for the MP3-ready email to addr and returns the MP3 id it
// names.
func (s *suite) origMailedFID(t *testing.T, addr string, timeout time.Duration) string {
	t.Helper()
	msg := s.mail.WaitFor(t, addr, timeout)
	m := fidLine.FindStringSubmatch(msg.Text)
	if msg.Subject != "MP3 Download" || m == nil {
		t.Fatalf("email to %s: %q, no \"mp3 file_id: … is now ready!\" line:\n%s", addr, msg.Subject, msg.Text)
	}
	return m[1]
}

// Original gateway → Go converter → Go gateway: a video stored with pymongo's
// GridFS and announced with pika, as the original gateway does, is converted
// by the Go converter; its owner gets the email and downloads the MP3 with a
// token from Go auth; another user cannot.
func TestOriginalGatewayUploadGoConverts(t *testing.T) {
	t.Parallel()
	py := origPython(t)
	s := startSuite(t)
	email, tok := s.newUser(t, "orig_gw")
	_, otherTok := s.newUser(t, "orig_gw_other")

	vid := s.origUpload(t, py, email, makeVideo(t, 5))
	fid := s.origMailedFID(t, email, 2*time.Minute)
	t.Logf("video %s (pymongo) → mp3 %s (Go converter)", vid, fid)

	status, mp3, disp := s.origDownload(t, tok, fid)
	if status != 200 {
		t.Fatalf("owner's download of %s: %d %s", fid, status, origBrief(mp3))
	}
	if want := "attachment; filename=" + fid + ".mp3"; disp != want {
		t.Errorf("Content-Disposition %q, want %q", disp, want)
	}
	if d := origMP3Seconds(t, mp3); d < 4.5 || d > 5.5 {
		t.Errorf("MP3 lasts %.2f s, want 5 ± 0.5", d)
	}
	if status, b, _ := s.origDownload(t, otherTok, fid); status != 404 {
		t.Errorf("another user's download: %d %s, want 404", status, origBrief(b))
	}
	s.waitQueuesEmpty(t, 30*time.Second)
}

// pymongo's GridFS reads back, byte for byte, the video the Go gateway
// stored on upload and the MP3 the Go converter stored.
func TestOriginalPymongoReadsGoFiles(t *testing.T) {
	t.Parallel()
	py := origPython(t)
	// The converter removes a video once its MP3 is stored: keep it, to
	// read it back after the conversion too.
	s := startSuiteWith(t, suiteOptions{env: map[string]string{"KEEP_VIDEOS": "true"}})
	_, tok := s.newUser(t, "orig_read")
	video := makeVideo(t, 3)
	want, err := os.ReadFile(video)
	if err != nil {
		t.Fatal(err)
	}
	jobPath := s.upload(t, tok, video)

	if got := origRead(t, py, s.videosDB, path.Base(jobPath)); got != origSum(want) {
		t.Errorf("pymongo reads the uploaded video as %+v, want %+v", got, origSum(want))
	}

	j := s.job(t, tok, jobPath, "done", 2*time.Minute)
	fid, _ := j["mp3_fid"].(string)
	if j["status"] != "done" || fid == "" {
		t.Fatalf("job = %v, want done with an mp3_fid", j)
	}
	status, mp3, _ := s.origDownload(t, tok, fid)
	if status != 200 {
		t.Fatalf("download %s: %d %s", fid, status, origBrief(mp3))
	}
	if d := origMP3Seconds(t, mp3); d < 2.5 || d > 3.5 {
		t.Errorf("MP3 lasts %.2f s, want 3 ± 0.5", d)
	}
	if got := origRead(t, py, s.mp3sDB, fid); got != origSum(mp3) {
		t.Errorf("pymongo reads the MP3 as %+v, the download is %+v", got, origSum(mp3))
	}
}

// Go gateway → original converter → Go notification (issue 11, item 8): the
// original converter takes the Go gateway's video message, stores the MP3
// under a new id with no metadata and announces it. The owner gets the
// email, sees the job done with that MP3 and downloads it; another user
// cannot.
func TestOriginalConverterGoNotification(t *testing.T) {
	t.Parallel()
	py := origPython(t)
	s := startSuite(t)
	// The original converter stands in for the Go one: with the Go
	// converter gone, the video message waits for converter_publish.py.
	s.converter.Kill()
	email, tok := s.newUser(t, "orig_conv")
	_, otherTok := s.newUser(t, "orig_conv_other")

	jobPath := s.upload(t, tok, makeVideo(t, 2))
	mp3File := origMakeMP3(t, 3)
	want, err := os.ReadFile(mp3File)
	if err != nil {
		t.Fatal(err)
	}
	fid := s.origConvert(t, py, mp3File)
	if fid == path.Base(jobPath) {
		t.Fatalf("the original converter reused the video's id %s: the test needs a new one", fid)
	}

	if got := s.origMailedFID(t, email, time.Minute); got != fid {
		t.Errorf("the email names MP3 %s, want %s", got, fid)
	}
	if j := s.job(t, tok, jobPath, "done", 30*time.Second); j["status"] != "done" || j["mp3_fid"] != fid {
		t.Errorf("job = %v, want done with mp3_fid %s", j, fid)
	}
	status, mp3, disp := s.origDownload(t, tok, fid)
	if status != 200 || !bytes.Equal(mp3, want) {
		t.Errorf("owner's download of %s: %d, %d bytes (want 200 with the %d bytes stored)", fid, status, len(mp3), len(want))
	} else if wantDisp := "attachment; filename=" + fid + ".mp3"; disp != wantDisp {
		t.Errorf("Content-Disposition %q, want %q", disp, wantDisp)
	}
	if status, b, _ := s.origDownload(t, otherTok, fid); status != 404 {
		t.Errorf("another user's download: %d %s, want 404", status, origBrief(b))
	}
}

// A token minted with PyJWT as the original auth does (admin: true) is an
// ordinary user at the Go gateway (issue 11, item 1): it lists and downloads
// its owner's conversions, never another user's.
func TestOriginalPyJWTTokenIsNoAdmin(t *testing.T) {
	t.Parallel()
	py := origPython(t)
	s := startSuite(t)
	_, tokA := s.newUser(t, "orig_jwt_a")
	emailB := testenv.MailAddress("orig_jwt_b")
	s.addUser(t, emailB, "pw")
	video := makeVideo(t, 2)
	jobA := s.upload(t, tokA, video)

	tokB := origToken(t, py, s.env["JWT_SECRET"], emailB)
	if c := origClaims(t, tokB); c["admin"] != true || c["username"] != emailB {
		t.Fatalf("PyJWT token claims %v, want the original's (username %s, admin: true)", c, emailB)
	}
	jobB := s.upload(t, tokB, video)

	code, b := s.get(t, tokB, "/jobs")
	var list []struct{ ID string }
	if code != 200 || json.Unmarshal(b, &list) != nil {
		t.Fatalf("GET /jobs with the PyJWT token: %d %q", code, b)
	}
	if len(list) != 1 || list[0].ID != path.Base(jobB) {
		t.Errorf("GET /jobs with the PyJWT token lists %s, want only B's job %s", b, path.Base(jobB))
	}

	jA := s.job(t, tokA, jobA, "done", 2*time.Minute)
	fidA, _ := jA["mp3_fid"].(string)
	if jA["status"] != "done" || fidA == "" {
		t.Fatalf("A's job = %v, want done", jA)
	}
	if status, _, _ := s.origDownload(t, tokA, fidA); status != 200 {
		t.Fatalf("A's own download: %d, want 200", status)
	}
	if status, b, _ := s.origDownload(t, tokB, fidA); status != 404 {
		t.Errorf("B (PyJWT token, admin: true) downloads A's MP3: %d %s, want 404", status, origBrief(b))
	}
	if code, b := s.get(t, tokB, jobA); code != 404 {
		t.Errorf("B (PyJWT token) reads A's job: %d %q, want 404", code, b)
	}

	jB := s.job(t, tokB, jobB, "done", 2*time.Minute)
	fidB, _ := jB["mp3_fid"].(string)
	if jB["status"] != "done" || fidB == "" {
		t.Fatalf("B's job = %v, want done", jB)
	}
	if status, mp3, _ := s.origDownload(t, tokB, fidB); status != 200 {
		t.Errorf("B's own download with the PyJWT token: %d %s, want 200", status, origBrief(mp3))
	}
}

// The original auth behind the Go gateway (issue 11, items 1, 2 and 10): the
// gateway becomes ready, logins return the original's tokens, uploads work
// with them, such a token downloads only its owner's MP3s, and a bearer
// header without a token is refused with 401 before the original auth
// (which would crash on it) is asked.
func TestOriginalAuthBehindGoGateway(t *testing.T) {
	t.Parallel()
	py := origPython(t)
	emailA, emailB := testenv.MailAddress("orig_auth_a"), testenv.MailAddress("orig_auth_b")
	// A secret of its own: nothing of Go auth is used (the suite's Go auth
	// runs, but the gateway is pointed away from it and knows none of these
	// users).
	peer := startOrigAuth(t, py, testenv.Name("orig-secret"), map[string]string{emailA: "pw-a", emailB: "pw-b"})
	s := startSuiteWith(t, suiteOptions{env: map[string]string{"AUTH_SVC_ADDRESS": peer.addr}})

	// Item 2: ready, although the original auth has no /healthz.
	if !testenv.Poll(15*time.Second, func() bool { return ready(s.gateway) }) {
		t.Errorf("gateway /readyz is not 200 within 15 s with the original auth behind it")
	}

	// Logins pass through, with the original's bodies.
	req, _ := http.NewRequest("POST", s.gateway.URL()+"/login", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || string(b) != "missing credentials" {
		t.Errorf("login without credentials: %d %q, want 401 missing credentials", resp.StatusCode, b)
	}
	if code, body, err := s.tryLogin(emailA, "wrong"); err != nil || code != 401 || body != "invalid credentials" {
		t.Errorf("login with a wrong password: %d %q %v, want 401 invalid credentials", code, body, err)
	}
	tokA := s.login(t, emailA, "pw-a")
	if c := origClaims(t, tokA); c["username"] != emailA || c["admin"] != true || c["role"] != nil {
		t.Fatalf("login returned claims %v, want the original auth's (username %s, admin: true)", c, emailA)
	}
	tokB := s.login(t, emailB, "pw-b")

	// An upload with the original's token is converted and downloaded by its owner.
	s.upload(t, tokA, makeVideo(t, 3))
	fid := s.origMailedFID(t, emailA, 2*time.Minute)
	status, mp3, _ := s.origDownload(t, tokA, fid)
	if status != 200 {
		t.Fatalf("owner's download of %s: %d %s", fid, status, origBrief(mp3))
	}
	if d := origMP3Seconds(t, mp3); d < 2.5 || d > 3.5 {
		t.Errorf("MP3 lasts %.2f s, want 3 ± 0.5", d)
	}

	// Item 1: the original's admin: true is no administrator.
	if status, b, _ := s.origDownload(t, tokB, fid); status != 404 {
		t.Errorf("B (original auth's token) downloads A's MP3: %d %s, want 404", status, origBrief(b))
	}

	// Item 10: "Bearer " without a token is the client's mistake (401), and
	// the original auth is not asked (it would answer 500).
	before := strings.Count(peer.log.String(), `" 500 `)
	for _, p := range []string{"/jobs", "/download?fid=" + fid} {
		req, _ := http.NewRequest("GET", s.gateway.URL()+p, nil)
		req.Header.Set("Authorization", "Bearer ")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || string(b) != "missing credentials" {
			t.Errorf("GET %s with \"Bearer \" and no token: %d %q, want 401 missing credentials", p, resp.StatusCode, b)
		}
	}
	if n := strings.Count(peer.log.String(), `" 500 `) - before; n > 0 {
		t.Errorf("the original auth answered 500 %d times: the gateway passed it the empty token", n)
	}
}
