package web_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/jobs"
	"mp3converter/internal/mq"
	"mp3converter/internal/testenv"
)

// stack is the suite running from its real binaries against the real
// servers, for one test: its own MySQL database, queue names and user.
type stack struct {
	gateway      *testenv.Proc
	gatewayEnv   map[string]string // to restart it
	auth         *testenv.Proc
	converter    *testenv.Proc // nil when cmd/converter is not there yet
	notification *testenv.Proc // nil when cmd/notification is not there yet
	email        string
	password     string
	maxUpload    int64
	videosDB     *mongo.Database // the job records are here
	amqpURL      string
}

// hasCommand reports whether ./cmd/<name>/main.go exists in this module.
func hasCommand(name string) bool {
	_, err := os.Stat(filepath.Join("..", "..", "cmd", name, "main.go"))
	return err == nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startStack builds and starts auth and gateway, and the converter and
// notification when their commands exist, and creates a user whose password
// is not ASCII (the page must send it as UTF-8).
func startStack(t *testing.T, maxUpload int64) *stack {
	t.Helper()
	mongoURI := testenv.Getenv(t, "MONGODB_URI")
	// Databases of the test's own, not the defaults that `make run` uses.
	vdb := testenv.Mongo(t)
	videosDB, mp3sDB := vdb.Name(), testenv.Mongo(t).Name()
	amqpURL := testenv.RabbitMQ(t)
	db := testenv.MySQL(t)
	videoQueue := testenv.Queue(t, amqpURL, "web_video")
	mp3Queue := testenv.Queue(t, amqpURL, "web_mp3")

	s := &stack{email: testenv.MailAddress("web"), password: "pässwörd ✓ " + randomHex(4), maxUpload: maxUpload}
	mysqlEnv := map[string]string{
		"MYSQL_HOST": db.Host, "MYSQL_PORT": strconv.Itoa(db.Port), "MYSQL_USER": db.User,
		"MYSQL_PASSWORD": db.Password, "MYSQL_DB": db.Name, "BCRYPT_COST": "4",
	}

	authBin := testenv.Binary(t, "auth")
	testenv.MigrateAuth(t, mysqlEnv)
	add := exec.Command(authBin, "user", "add", "--email", s.email)
	add.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range mysqlEnv {
		add.Env = append(add.Env, k+"="+v)
	}
	add.Stdin = strings.NewReader(s.password + "\n")
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("auth user add: %v\n%s", err, out)
	}

	authEnv := map[string]string{"JWT_SECRET": randomHex(32)}
	for k, v := range mysqlEnv {
		authEnv[k] = v
	}
	s.auth = testenv.Start(t, "auth", authBin, testenv.FreePort(t), authEnv)

	gwPort := testenv.FreePort(t)
	publicURL := "http://127.0.0.1:" + strconv.Itoa(gwPort)
	s.gatewayEnv = map[string]string{
		"AUTH_SVC_ADDRESS":  "127.0.0.1:" + strconv.Itoa(s.auth.Port),
		"MONGODB_URI":       mongoURI,
		"MONGODB_VIDEOS_DB": videosDB,
		"MONGODB_MP3S_DB":   mp3sDB,
		"RABBITMQ_URL":      amqpURL,
		"VIDEO_QUEUE":       videoQueue,
		"MAX_UPLOAD_BYTES":  strconv.FormatInt(maxUpload, 10),
		"PUBLIC_URL":        publicURL,
	}
	s.gateway = testenv.Start(t, "gateway", testenv.Binary(t, "gateway"), gwPort, s.gatewayEnv)

	if hasCommand("converter") {
		s.converter = testenv.Start(t, "converter", testenv.Binary(t, "converter"), testenv.FreePort(t), map[string]string{
			"MONGODB_URI":       mongoURI,
			"MONGODB_VIDEOS_DB": videosDB,
			"MONGODB_MP3S_DB":   mp3sDB,
			"RABBITMQ_URL":      amqpURL,
			"VIDEO_QUEUE":       videoQueue,
			"MP3_QUEUE":         mp3Queue,
			"FFMPEG_PATH":       testenv.Getenv(t, "FFMPEG_PATH"),
			"FFPROBE_PATH":      ffprobePath(t),
			"CONCURRENCY":       "2",
			"SCRATCH_DIR":       t.TempDir(),
		})
	}
	if hasCommand("notification") {
		s.notification = testenv.Start(t, "notification", testenv.Binary(t, "notification"), testenv.FreePort(t), map[string]string{
			"MONGODB_URI":       mongoURI, // it records each MP3's outcome
			"MONGODB_VIDEOS_DB": videosDB,
			"MONGODB_MP3S_DB":   mp3sDB,
			"RABBITMQ_URL":      amqpURL,
			"MP3_QUEUE":         mp3Queue,
			"SMTP_HOST":         testenv.Getenv(t, "SMTP_HOST"),
			"SMTP_PORT":         testenv.Getenv(t, "SMTP_PORT"),
			"SMTP_TLS":          "none",
			"MAIL_FROM":         "MP3 converter <mp3@example.com>",
			"PUBLIC_URL":        publicURL,
		})
	}
	s.videosDB = vdb
	s.amqpURL = amqpURL
	return s
}

// jobs is the suite's job store as a service holds it: its changes are
// announced to the gateway's event streams.
func (s *stack) jobs(t *testing.T) *jobs.Store {
	t.Helper()
	store, err := jobs.NewStore(s.videosDB)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	broker, err := mq.New(s.amqpURL, log, mq.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	if err := broker.Ready(context.Background()); err != nil {
		testenv.Eventually(t, 20*time.Second, "the test's broker connection", func() bool { return broker.Ready(context.Background()) == nil })
	}
	store.AnnounceOn(broker.Announce, log)
	return store
}

func ffprobePath(t *testing.T) string {
	if p := os.Getenv("FFPROBE_PATH"); p != "" {
		return p
	}
	return filepath.Join(filepath.Dir(testenv.Getenv(t, "FFMPEG_PATH")), "ffprobe")
}

// makeNoisyVideo writes an MP4 of about 6 MB of noise (hard to compress):
// an upload long enough to be cut half-way.
func makeNoisyVideo(t *testing.T, dir, name string) string {
	return ffmpegFile(t, filepath.Join(dir, name),
		"-f", "lavfi", "-i", "nullsrc=size=640x360:rate=25:duration=3,geq=lum='random(1)*255':cb=128:cr=128",
		"-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100:duration=3",
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "16M", "-maxrate", "16M", "-bufsize", "4M", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "96k", "-shortest")
}

// makeVideo writes a short MP4 (H.264 and AAC, moov first) of about 1.5 MB:
// large enough for the upload to report progress more than once.
func makeVideo(t *testing.T, dir, name string) string {
	return ffmpegFile(t, filepath.Join(dir, name),
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=4",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=4",
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", "3M", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "96k", "-shortest", "-movflags", "+faststart")
}

// ffmpegFile runs ffmpeg with args and the output path p, and returns p.
func ffmpegFile(t *testing.T, p string, args ...string) string {
	t.Helper()
	cmd := exec.Command(testenv.Getenv(t, "FFMPEG_PATH"), append(append([]string{"-v", "error", "-y"}, args...), p)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	return p
}

// audioCodec returns the codec of the file's first audio stream as ffprobe
// reports it.
func audioCodec(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command(ffprobePath(t), "-v", "error", "-select_streams", "a:0",
		"-show_entries", "stream=codec_name", "-of", "default=noprint_wrappers=1:nokey=1", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v\n%s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}
