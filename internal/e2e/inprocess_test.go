package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"mp3converter/internal/app"
	"mp3converter/internal/auth"
	"mp3converter/internal/config"
	"mp3converter/internal/converter"
	"mp3converter/internal/gateway"
	"mp3converter/internal/notification"
	"mp3converter/internal/testenv"
)

// runInProcess validates the configuration env makes (as config.Load does
// for a binary), runs the service's Run in the test's process, and returns
// where its servers listen once they serve. The test's end cancels it and
// waits for it to return; an error it returns then fails the test.
func runInProcess[C config.Validator](t *testing.T, name string, env map[string]string,
	run func(context.Context, C, *slog.Logger) error) app.Addrs {
	t.Helper()
	cfg, err := config.LoadFrom[C](env)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("%s config: %v", name, err)
	}
	log, _ := testenv.Logger(t)
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan app.Addrs, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		err = run(app.WithStarted(ctx, func(a app.Addrs) { addrs <- a }), cfg, log)
	}()
	t.Cleanup(func() {
		cancel()
		<-finished
		if err != nil {
			t.Errorf("%s returned: %v", name, err)
		}
	})
	select {
	case a := <-addrs:
		return a
	case <-finished:
		t.Fatalf("%s ended at start: %v", name, err)
	case <-time.After(time.Minute):
		t.Fatalf("%s did not start serving within a minute", name)
	}
	return app.Addrs{}
}

// send does req with the suite's client and returns the status and body.
func send(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, string(b)
}

// The four services run in this process on port 0 (the way a debugger or
// a coverage run would start them), find each other, and convert a video.
func TestInProcessOnPortZero(t *testing.T) {
	db := testenv.MySQL(t)
	amqpURL := testenv.RabbitMQ(t)
	mail := testenv.MailpitShared(t)
	env := map[string]string{
		"PORT": "0", "OPS_PORT": "0", "LOG_LEVEL": "debug",
		"MYSQL_HOST": db.Host, "MYSQL_PORT": fmt.Sprint(db.Port), "MYSQL_USER": db.User,
		"MYSQL_PASSWORD": db.Password, "MYSQL_DB": db.Name, "JWT_SECRET": "in-process", "BCRYPT_COST": "4",
		"MONGODB_URI": testenv.Getenv(t, "MONGODB_URI"), "RABBITMQ_URL": amqpURL,
		"MONGODB_VIDEOS_DB": testenv.Mongo(t).Name(), "MONGODB_MP3S_DB": testenv.Mongo(t).Name(),
		"VIDEO_QUEUE": testenv.Queue(t, amqpURL, "inprocvideo"), "MP3_QUEUE": testenv.Queue(t, amqpURL, "inprocmp3"),
		"FFMPEG_PATH": testenv.Getenv(t, "FFMPEG_PATH"), "FFPROBE_PATH": testenv.Getenv(t, "FFPROBE_PATH"),
		"SMTP_HOST": mail.SMTPHost, "SMTP_PORT": fmt.Sprint(mail.SMTPPort), "SMTP_TLS": "none",
		"MAIL_FROM": "mp3converter@example.com", "SCRATCH_DIR": t.TempDir(),
	}
	testenv.MigrateAuth(t, env)
	for k, v := range env { // `auth user add` reads the process environment
		t.Setenv(k, v)
	}
	email := testenv.MailAddress("inproc")
	if err := auth.Command(context.Background(), []string{"user", "add", "--email", email},
		strings.NewReader("pw\n"), io.Discard, "test"); err != nil {
		t.Fatal(err)
	}

	authAddr := runInProcess(t, "auth", env, auth.Run).Public
	env["AUTH_SVC_ADDRESS"] = authAddr
	gw := runInProcess(t, "gateway", env, gateway.Run)
	conv := runInProcess(t, "converter", env, converter.Run)
	notif := runInProcess(t, "notification", env, notification.Run)

	for _, addr := range []string{authAddr, gw.Ops, conv.Ops, notif.Ops} {
		u := "http://" + addr
		testenv.Eventually(t, 30*time.Second, u+"/readyz answers 200", func() bool {
			resp, err := http.Get(u + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
	}

	gwURL := "http://" + gw.Public
	req, _ := http.NewRequest("POST", gwURL+"/login", nil)
	req.SetBasicAuth(email, "pw")
	status, tok := send(t, req)
	if status != 200 {
		t.Fatalf("login: %d %q", status, tok)
	}
	video, err := os.Open(makeVideo(t, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer video.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, _ := mw.CreateFormFile("file", "clip.mp4")
		_, err := io.Copy(part, video)
		pw.CloseWithError(errors.Join(err, mw.Close()))
	}()
	req, _ = http.NewRequest("POST", gwURL+"/upload", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("upload: %d", resp.StatusCode)
	}
	fid := path.Base(resp.Header.Get("Location"))

	mail.WaitFor(t, email, time.Minute)
	req, _ = http.NewRequest("GET", gwURL+"/download?fid="+fid, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if status, body := send(t, req); status != 200 || len(body) < 1000 {
		t.Fatalf("download: %d, %d bytes", status, len(body))
	}
}
