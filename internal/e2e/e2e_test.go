// Package e2e runs the four real binaries, built from this tree, against the
// real servers of the local stack (MariaDB, RabbitMQ, FerretDB, Mailpit,
// ffmpeg) and does what a user does with curl.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/testenv"
)

// suite is one running copy of the system, private to a test: its own
// MySQL database, queues, MongoDB databases and email addresses.
//
// The services reach RabbitMQ, FerretDB and Mailpit's SMTP port through a
// testenv.Proxy of the suite's own. `make test` runs every package in
// parallel against the same shared servers, so a fault test must never stop
// or restart a real server: it simulates the outage on its proxy instead
// (Down drops every open connection and refuses new ones, Up brings the
// same address back), which the services see exactly as they would a broker
// restart or a database going away. The test itself reaches the servers
// directly (queue depths, file counts, mail), so it keeps seeing them.
type suite struct {
	gateway, auth, converter, notification *testenv.Proc
	converters, notifications              []*testenv.Proc // all replicas; [0] is converter / notification

	amqpURL, videoQueue, mp3Queue string // amqpURL reaches the broker directly, not through the proxy
	rabbit, mongo, smtp           *testenv.Proxy
	videosDB, mp3sDB              *mongo.Database
	mail                          *testenv.Mailpit
	env                           map[string]string
	authBin                       string // for `auth user add`
}

// suiteOptions vary a suite: extra replicas, and env overrides for all four
// binaries.
type suiteOptions struct {
	converters, notifications int // replicas; 0 means 1
	env                       map[string]string
}

func startSuite(t *testing.T) *suite { return startSuiteWith(t, suiteOptions{}) }

func startSuiteWith(t *testing.T, opt suiteOptions) *suite {
	t.Helper()
	db := testenv.MySQL(t)
	videosDB, mp3sDB := testenv.Mongo(t), testenv.Mongo(t)
	amqpURL := testenv.RabbitMQ(t)
	rabbitURL, rabbit := testenv.RabbitMQProxy(t)
	s := &suite{
		amqpURL:    amqpURL,
		videoQueue: testenv.Queue(t, amqpURL, "e2evideo"),
		mp3Queue:   testenv.Queue(t, amqpURL, "e2emp3"),
		mail:       testenv.MailpitShared(t),
		rabbit:     rabbit,
		videosDB:   videosDB,
		mp3sDB:     mp3sDB,
		authBin:    testenv.Binary(t, "auth"),
	}
	mongoURI := testenv.Getenv(t, "MONGODB_URI")
	s.mongo, mongoURI = mongoProxy(t, mongoURI)
	s.smtp = testenv.NewProxy(t, s.mail.SMTPAddr())
	smtpHost, smtpPort, _ := net.SplitHostPort(s.smtp.Addr())

	authPort, gwPort := testenv.FreePort(t), testenv.FreePort(t)
	// The contract's configuration table, plus the stack's addresses (the
	// proxies), plus short timeouts so that faults resolve in seconds.
	s.env = map[string]string{
		"MYSQL_HOST": db.Host, "MYSQL_PORT": strconv.Itoa(db.Port), "MYSQL_USER": db.User,
		"MYSQL_PASSWORD": db.Password, "MYSQL_DB": db.Name, "JWT_SECRET": "e2e-secret",
		"AUTH_SVC_ADDRESS": fmt.Sprintf("127.0.0.1:%d", authPort),
		"MONGODB_URI":      mongoURI, "RABBITMQ_URL": rabbitURL,
		"MONGODB_VIDEOS_DB": videosDB.Name(), "MONGODB_MP3S_DB": mp3sDB.Name(),
		"VIDEO_QUEUE": s.videoQueue, "MP3_QUEUE": s.mp3Queue,
		"FFMPEG_PATH": testenv.Getenv(t, "FFMPEG_PATH"), "FFPROBE_PATH": testenv.Getenv(t, "FFPROBE_PATH"),
		"SMTP_HOST": smtpHost, "SMTP_PORT": smtpPort, "SMTP_TLS": "none", "SMTP_TIMEOUT": "10s",
		"MAIL_FROM": "mp3converter@example.com", "PUBLIC_URL": fmt.Sprintf("http://127.0.0.1:%d", gwPort),
		"SCRATCH_DIR": t.TempDir(), "RETRY_BACKOFF": "200ms", "CONCURRENCY": "2",
		// Enough attempts to outlive the outages the fault tests inject
		// (each try against a missing FerretDB takes the driver's 5 s
		// server selection timeout).
		"MAX_ATTEMPTS": "10", "MAX_RETRY_BACKOFF": "2s",
		"AUTH_TIMEOUT": "2s", "AUTH_LOGIN_TIMEOUT": "2s", "PUBLISH_TIMEOUT": "5s", "SHUTDOWN_TIMEOUT": "5s",
		// The notification signs the emails' one-click links, the gateway
		// verifies them.
		"DOWNLOAD_LINK_KEY": e2eLinkKey,
	}
	for k, v := range opt.env {
		s.env[k] = v
	}
	testenv.MigrateAuth(t, s.env) // as the manifests' init container does
	s.auth = testenv.Start(t, "auth", testenv.Binary(t, "auth"), authPort, s.env)
	s.gateway = testenv.Start(t, "gateway", testenv.Binary(t, "gateway"), gwPort, s.env)
	for range max(opt.converters, 1) {
		s.startConverter(t, nil)
	}
	for range max(opt.notifications, 1) {
		s.startNotification(t)
	}
	s.converter, s.notification = s.converters[0], s.notifications[0]
	if os.Getenv("E2E_DUMP_LOGS") != "" { // for debugging: every process's output, pass or fail
		t.Cleanup(func() {
			for _, p := range append([]*testenv.Proc{s.auth, s.gateway}, append(s.converters, s.notifications...)...) {
				t.Logf("--- %s (pid %d) output ---\n%s", p.Name, p.PID(), p.Output())
			}
		})
	}
	return s
}

// startConverter starts one more converter replica, with env overriding
// the suite's.
func (s *suite) startConverter(t *testing.T, env map[string]string) *testenv.Proc {
	t.Helper()
	p := testenv.Start(t, "converter", testenv.Binary(t, "converter"), testenv.FreePort(t), s.envWith(env))
	s.converters = append(s.converters, p)
	return p
}

func (s *suite) startNotification(t *testing.T) *testenv.Proc {
	t.Helper()
	p := testenv.Start(t, "notification", testenv.Binary(t, "notification"), testenv.FreePort(t), s.env)
	s.notifications = append(s.notifications, p)
	return p
}

// envWith is the suite's environment with overrides.
func (s *suite) envWith(overrides map[string]string) map[string]string {
	env := maps.Clone(s.env)
	maps.Copy(env, overrides)
	return env
}

// mongoProxy puts a Proxy in front of the (single) host of uri and returns
// it with the URI that goes through it.
func mongoProxy(t *testing.T, uri string) (*testenv.Proxy, string) {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil || u.Host == "" || strings.Contains(u.Host, ",") {
		t.Fatalf("MONGODB_URI %q: want mongodb://host:port/ with a single host", uri)
	}
	target := u.Host
	if _, _, err := net.SplitHostPort(target); err != nil {
		target = net.JoinHostPort(target, "27017")
	}
	p := testenv.NewProxy(t, target)
	u.Host = p.Addr()
	return p, u.String()
}

// addUser runs the operator command: `auth user add --email E` with the
// password on stdin.
func (s *suite) addUser(t *testing.T, email, password string) {
	t.Helper()
	if err := s.tryAddUser(email, password); err != nil {
		t.Fatal(err)
	}
}

// tryAddUser is addUser without failing the test (safe in goroutines).
func (s *suite) tryAddUser(email, password string) error {
	cmd := exec.Command(s.authBin, "user", "add", "--email", email)
	for k, v := range s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("auth user add: %w: %s", err, out)
	}
	return nil
}

// client bounds every request of a test: a hang is a failure, not a stuck
// test.
// Keep-alive connections are pooled per host as a browser or a load
// balancer would, so the load test measures requests, not TCP handshakes.
var client = &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
	MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
}}

// newUser adds a user with a fresh address (password "pw") and logs in.
func (s *suite) newUser(t *testing.T, prefix string) (email, tok string) {
	t.Helper()
	email = testenv.MailAddress(prefix)
	s.addUser(t, email, "pw")
	return email, s.login(t, email, "pw")
}

func (s *suite) login(t *testing.T, email, password string) string {
	t.Helper()
	status, b, err := s.tryLogin(email, password)
	if err != nil {
		t.Fatal(err)
	}
	if status != 200 {
		t.Fatalf("login: %d %q", status, b)
	}
	return b
}

// tryLogin is POST /login on the gateway; it does not fail the test (safe in
// goroutines).
func (s *suite) tryLogin(email, password string) (int, string, error) {
	return s.tryLoginCtx(context.Background(), email, password)
}

func (s *suite) tryLoginCtx(ctx context.Context, email, password string) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", s.gateway.URL()+"/login", nil)
	req.SetBasicAuth(email, password)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// upload posts the file as `curl -F file=@path` does and returns the job path.
func (s *suite) upload(t *testing.T, tok, path string) string {
	t.Helper()
	r := s.tryUpload(tok, path)
	if r.err != nil {
		t.Fatalf("upload: %v", r.err)
	}
	if r.status != 200 || r.body != "success!" {
		t.Fatalf("upload: %d %q", r.status, r.body)
	}
	return r.job
}

type uploadResult struct {
	status int
	body   string
	job    string // the Location header: /jobs/{id}
	took   time.Duration
	err    error // transport error
}

// fid is the video's (and the MP3's) id: the last element of the job path.
func (r uploadResult) fid() string { return path.Base(r.job) }

// tryUpload is upload without failing the test (safe in goroutines).
func (s *suite) tryUpload(tok, file string) uploadResult {
	return s.tryUploadCtx(context.Background(), tok, file)
}

// tryUploadWithin is tryUpload with a bound: no answer within d is an
// error (the test's "did not happen"), not a slow success.
func (s *suite) tryUploadWithin(tok, file string, d time.Duration) uploadResult {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	r := s.tryUploadCtx(ctx, tok, file)
	if r.err != nil && ctx.Err() != nil {
		r.err = fmt.Errorf("no answer within %s: %w", d, r.err)
	}
	return r
}

func (s *suite) tryUploadCtx(ctx context.Context, tok, file string) uploadResult {
	f, err := os.Open(file)
	if err != nil {
		return uploadResult{err: err}
	}
	defer f.Close()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreateFormFile("file", filepath.Base(file))
	if _, err := io.Copy(w, f); err != nil {
		return uploadResult{err: err}
	}
	mw.Close()
	return s.postUploadCtx(ctx, tok, &body, mw.FormDataContentType())
}

func (s *suite) postUpload(tok string, body io.Reader, ctype string) uploadResult {
	return s.postUploadCtx(context.Background(), tok, body, ctype)
}

func (s *suite) postUploadCtx(ctx context.Context, tok string, body io.Reader, ctype string) uploadResult {
	start := time.Now()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.gateway.URL()+"/upload", body)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", ctype)
	resp, err := client.Do(req)
	if err != nil {
		return uploadResult{err: err, took: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return uploadResult{status: resp.StatusCode, body: string(b), job: resp.Header.Get("Location"),
		took: time.Since(start), err: err}
}

func (s *suite) get(t *testing.T, tok, path string) (int, []byte) {
	t.Helper()
	status, b, err := s.tryGet(tok, path)
	if err != nil {
		t.Fatal(err)
	}
	return status, b
}

func (s *suite) tryGet(tok, path string) (int, []byte, error) {
	return s.tryGetCtx(context.Background(), tok, path)
}

func (s *suite) tryGetCtx(ctx context.Context, tok, path string) (int, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", s.gateway.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// job returns the job at path once its status is want (the converter
// publishes the result before it updates the job, so the email may come
// first), or whatever it is after the timeout (20 s if 0).
func (s *suite) job(t *testing.T, tok, path, want string, timeout ...time.Duration) map[string]any {
	t.Helper()
	d := 20 * time.Second
	if len(timeout) > 0 {
		d = timeout[0]
	}
	var j map[string]any
	testenv.Poll(d, func() bool {
		status, b := s.get(t, tok, path)
		j = nil
		if status != 200 || json.Unmarshal(b, &j) != nil {
			t.Fatalf("GET %s: %d %q", path, status, b)
		}
		return j["status"] == want
	})
	return j
}

// queueDepth is the number of ready messages in q.
func (s *suite) queueDepth(t *testing.T, q string) int {
	t.Helper()
	n, _ := testenv.QueueDepth(t, s.amqpURL, q) // not declared: empty
	return n
}

// makeVideo writes a video of the given seconds with a 440 Hz tone.
func makeVideo(t *testing.T, seconds int) string {
	t.Helper()
	return testenv.Video(t, "holiday.mp4", seconds, "320x240", 10)
}

func ffprobe(t *testing.T, path string) testenv.Probe {
	t.Helper()
	return testenv.FFprobe(t, path)
}

var fidLine = regexp.MustCompile(`mp3 file_id: ([0-9a-f]{24}) is now ready!`)

// The user's whole journey with curl: log in, upload a 60-second video, get
// the email, download the MP3 it names, and play it (ffprobe).
func TestUploadConvertEmailDownload(t *testing.T) {
	t.Parallel()
	s := startSuite(t)
	email := testenv.MailAddress("e2e_user")
	s.addUser(t, email, "correct horse")
	tok := s.login(t, email, "correct horse")
	video := makeVideo(t, 60)

	start := time.Now()
	jobPath := s.upload(t, tok, video)
	msg := s.mail.WaitFor(t, email, 3*time.Minute)
	took := time.Since(start)
	t.Logf("upload → email: %s for a 60-second video", took.Round(10*time.Millisecond))

	if msg.Subject != "MP3 Download" {
		t.Fatalf("subject %q", msg.Subject)
	}
	m := fidLine.FindStringSubmatch(msg.Text)
	if m == nil {
		t.Fatalf("email body lacks the original's line:\n%s", msg.Text)
	}
	fid := m[1]
	if !strings.Contains(msg.Text, s.env["PUBLIC_URL"]) {
		t.Fatalf("email has no link to %s:\n%s", s.env["PUBLIC_URL"], msg.Text)
	}

	status, mp3 := s.get(t, tok, "/download?fid="+fid)
	if status != 200 {
		t.Fatalf("download: %d %q", status, mp3)
	}
	out := filepath.Join(t.TempDir(), fid+".mp3")
	if err := os.WriteFile(out, mp3, 0o600); err != nil {
		t.Fatal(err)
	}
	p := ffprobe(t, out)
	dur, _ := strconv.ParseFloat(p.Format.Duration, 64)
	if p.Format.FormatName != "mp3" || len(p.Streams) != 1 || p.Streams[0].CodecName != "mp3" {
		t.Fatalf("downloaded file is %+v, want one mp3 stream", p)
	}
	if dur < 59.5 || dur > 60.5 {
		t.Fatalf("MP3 lasts %.2f s, want 60 ± 0.5", dur)
	}

	j := s.job(t, tok, jobPath, "done")
	if j["status"] != "done" || j["mp3_fid"] != fid || j["progress"] != float64(100) {
		t.Fatalf("job = %v", j)
	}
	// Another user cannot fetch it.
	other := testenv.MailAddress("e2e_other")
	s.addUser(t, other, "pw")
	if status, _ := s.get(t, s.login(t, other, "pw"), "/download?fid="+fid); status != 404 {
		t.Fatalf("another user's download: %d, want 404", status)
	}
}

// Random bytes are not a video: the user gets a failure email, the job says
// failed with a reason, and nothing stays in the queues.
func TestNotAVideo(t *testing.T) {
	t.Parallel()
	s := startSuite(t)
	email, tok := s.newUser(t, "e2e_bad")
	junk := filepath.Join(t.TempDir(), "junk.bin")
	b := make([]byte, 256<<10)
	rand.Read(b)
	if err := os.WriteFile(junk, b, 0o600); err != nil {
		t.Fatal(err)
	}
	jobPath := s.upload(t, tok, junk)

	msg := s.mail.WaitFor(t, email, 2*time.Minute)
	if !strings.Contains(strings.ToLower(msg.Subject), "fail") || !strings.Contains(msg.Text, "junk.bin") {
		t.Fatalf("failure email: %q\n%s", msg.Subject, msg.Text)
	}
	j := s.job(t, tok, jobPath, "failed")
	if j["status"] != "failed" || j["error"] == "" || j["mp3_fid"] != nil {
		t.Fatalf("job = %v", j)
	}
	// The video queue drains and stays empty (no requeue loop), nothing
	// dead: the upload's message and the failure email's are settled for
	// good, so nothing comes back to the queues.
	s.waitSettled(t, s.videoQueue, []*testenv.Proc{s.gateway}, s.converters, 30*time.Second)
	s.waitSettled(t, s.mp3Queue, s.converters, s.notifications, 30*time.Second)
	for _, q := range []string{s.videoQueue, s.mp3Queue, s.videoQueue + ".dead", s.mp3Queue + ".dead"} {
		if n := s.queueDepth(t, q); n != 0 {
			t.Fatalf("queue %s holds %d messages", q, n)
		}
	}
	if n := len(s.mail.To(t, email)); n != 1 {
		t.Fatalf("%d emails, want exactly 1", n)
	}
}
