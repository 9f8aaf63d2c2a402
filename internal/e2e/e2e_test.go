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
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"mp3converter/internal/testenv"
)

// suite is one running copy of the system, private to a test: its own
// MySQL database, queues, MongoDB databases and email addresses.
type suite struct {
	gateway, auth, converter, notification *testenv.Proc
	amqpURL, videoQueue, mp3Queue          string
	mail                                   *testenv.Mailpit
	env                                    map[string]string
}

func startSuite(t *testing.T) *suite {
	t.Helper()
	db := testenv.MySQL(t)
	videosDB, mp3sDB := testenv.Mongo(t), testenv.Mongo(t)
	amqpURL := testenv.RabbitMQ(t)
	s := &suite{
		amqpURL:    amqpURL,
		videoQueue: testenv.Queue(t, amqpURL, "e2evideo"),
		mp3Queue:   testenv.Queue(t, amqpURL, "e2emp3"),
		mail:       testenv.MailpitShared(t),
	}
	authPort, gwPort := testenv.FreePort(t), testenv.FreePort(t)
	// The contract's configuration table, plus the stack's addresses.
	s.env = map[string]string{
		"MYSQL_HOST": db.Host, "MYSQL_PORT": strconv.Itoa(db.Port), "MYSQL_USER": db.User,
		"MYSQL_PASSWORD": db.Password, "MYSQL_DB": db.Name, "JWT_SECRET": "e2e-secret",
		"AUTH_SVC_ADDRESS": fmt.Sprintf("127.0.0.1:%d", authPort),
		"MONGODB_URI":      testenv.Getenv(t, "MONGODB_URI"), "RABBITMQ_URL": amqpURL,
		"MONGODB_VIDEOS_DB": videosDB.Name(), "MONGODB_MP3S_DB": mp3sDB.Name(),
		"VIDEO_QUEUE": s.videoQueue, "MP3_QUEUE": s.mp3Queue,
		"FFMPEG_PATH": testenv.Getenv(t, "FFMPEG_PATH"), "FFPROBE_PATH": testenv.Getenv(t, "FFPROBE_PATH"),
		"SMTP_HOST": s.mail.SMTPHost, "SMTP_PORT": strconv.Itoa(s.mail.SMTPPort), "SMTP_TLS": "none",
		"MAIL_FROM": "mp3converter@example.com", "PUBLIC_URL": fmt.Sprintf("http://127.0.0.1:%d", gwPort),
		"SCRATCH_DIR": t.TempDir(), "RETRY_BACKOFF": "200ms", "CONCURRENCY": "2",
	}
	s.auth = testenv.Start(t, "auth", testenv.Binary(t, "auth"), authPort, s.env)
	s.gateway = testenv.Start(t, "gateway", testenv.Binary(t, "gateway"), gwPort, s.env)
	s.converter = testenv.Start(t, "converter", testenv.Binary(t, "converter"), testenv.FreePort(t), s.env)
	s.notification = testenv.Start(t, "notification", testenv.Binary(t, "notification"), testenv.FreePort(t), s.env)
	return s
}

// addUser runs the operator command: `auth user add --email E` with the
// password on stdin.
func (s *suite) addUser(t *testing.T, email, password string) {
	t.Helper()
	cmd := exec.Command(testenv.Binary(t, "auth"), "user", "add", "--email", email)
	for k, v := range s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("auth user add: %v\n%s", err, out)
	}
}

func (s *suite) login(t *testing.T, email, password string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", s.gateway.URL()+"/login", nil)
	req.SetBasicAuth(email, password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %q", resp.StatusCode, b)
	}
	return string(b)
}

// upload posts the file as `curl -F file=@path` does and returns the job path.
func (s *suite) upload(t *testing.T, tok, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	w, _ := mw.CreateFormFile("file", filepath.Base(path))
	io.Copy(w, f)
	mw.Close()
	req, _ := http.NewRequest("POST", s.gateway.URL()+"/upload", &body)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "success!" {
		t.Fatalf("upload: %d %q", resp.StatusCode, b)
	}
	return resp.Header.Get("Location")
}

func (s *suite) get(t *testing.T, tok, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.gateway.URL()+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// job returns the job at path once its status is want (the converter
// publishes the result before it updates the job, so the email may come
// first), or whatever it is after 20 s.
func (s *suite) job(t *testing.T, tok, path, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, b := s.get(t, tok, path)
		var j map[string]any
		if status != 200 || json.Unmarshal(b, &j) != nil {
			t.Fatalf("GET %s: %d %q", path, status, b)
		}
		if j["status"] == want || time.Now().After(deadline) {
			return j
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// queueDepth is the number of ready messages in q.
func (s *suite) queueDepth(t *testing.T, q string) int {
	t.Helper()
	conn, err := amqp.Dial(s.amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		return 0 // not declared: empty
	}
	return info.Messages
}

// makeVideo writes a video of the given seconds with a 440 Hz tone.
func makeVideo(t *testing.T, seconds int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "holiday.mp4")
	d := strconv.Itoa(seconds)
	out, err := exec.Command(testenv.Getenv(t, "FFMPEG_PATH"), "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration="+d,
		"-f", "lavfi", "-i", "sine=frequency=440:duration="+d,
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", p).CombinedOutput()
	if err != nil {
		t.Fatalf("make video: %v\n%s", err, out)
	}
	return p
}

type probe struct {
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
	} `json:"format"`
	Streams []struct {
		CodecName string `json:"codec_name"`
		CodecType string `json:"codec_type"`
	} `json:"streams"`
}

func ffprobe(t *testing.T, path string) probe {
	t.Helper()
	out, err := exec.Command(testenv.Getenv(t, "FFPROBE_PATH"), "-v", "error", "-print_format", "json",
		"-show_format", "-show_streams", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	return p
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
	email := testenv.MailAddress("e2e_bad")
	s.addUser(t, email, "pw")
	tok := s.login(t, email, "pw")
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
	// The video queue drains and stays empty (no requeue loop), nothing dead.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil && s.queueDepth(t, s.videoQueue)+s.queueDepth(t, s.mp3Queue) > 0 {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	for _, q := range []string{s.videoQueue, s.mp3Queue, s.videoQueue + ".dead", s.mp3Queue + ".dead"} {
		if n := s.queueDepth(t, q); n != 0 {
			t.Fatalf("queue %s holds %d messages", q, n)
		}
	}
	if n := len(s.mail.To(t, email)); n != 1 {
		t.Fatalf("%d emails, want exactly 1", n)
	}
}
