package e2e

// Fault tests: each starts its own suite, injects one fault, and asserts what
// a user sees: every accepted upload ends as exactly one MP3 (counted in the
// suite's own mp3s database) and at least one email naming it, or as a
// failed job the user was told about; nothing is silently lost.
//
// Outages of RabbitMQ, FerretDB and Mailpit are simulated with the suite's
// testenv.Proxy in front of each (see suite): `make test` runs every package
// in parallel against the same shared servers, so stopping a real server
// (rabbitmqctl stop_app, killing FerretDB) would break the other tests.
// Proxy.Down drops every connection and refuses new ones, which is what the
// services would see during a broker restart or a database outage.

import (
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mp3converter/internal/testenv"
)

// A converter SIGKILLed in the middle of a conversion loses nothing: its
// message goes back to the queue, another converter takes it and the user
// gets exactly one MP3 and the email.
func TestFaultConverterKilledMidConversion(t *testing.T) {
	t.Parallel()
	// One conversion at a time, read at the clip's pace: a 6-second clip
	// is "converting" for 6 seconds.
	s := startSuiteWith(t, suiteOptions{env: map[string]string{
		"CONCURRENCY": "1", "FFMPEG_PATH": realtimeFFmpeg(t),
	}})
	email, tok := s.newUser(t, "e2e_ckill")
	video := makeVideo(t, 6)

	job := s.upload(t, tok, video)
	testenv.Eventually(t, time.Minute, "converting with progress", func() bool {
		st, pct := s.jobStatus(tok, job)
		return st == "converting" && pct > 0
	})
	s.converter.Kill() // SIGKILL, ffmpeg included
	if st, _ := s.jobStatus(tok, job); st != "converting" {
		t.Fatalf("job is %q right after the kill, want converting", st)
	}
	if fc := gridCounts(t, s.mp3sDB); fc.files != 0 {
		t.Fatalf("%d MP3s visible after the converter died mid-conversion", fc.files)
	}

	s.startConverter(t, map[string]string{"FFMPEG_PATH": testenv.Getenv(t, "FFMPEG_PATH")})
	s.waitDone(t, tok, []string{job}, 2*time.Minute)
	fid := filepath.Base(job)
	s.waitMailed(t, email, []string{fid}, time.Minute)
	s.waitQueuesEmpty(t, 30*time.Second)
	if fc := gridCounts(t, s.mp3sDB); fc != (fileCounts{files: 1}) {
		t.Fatalf("mp3s bucket: %+v, want exactly one complete MP3 and no stray chunks", fc)
	}
	s.checkMP3(t, tok, fid, 6)
}

// The notification service SIGKILLed after the MP3 was stored: the mp3
// messages wait in their durable queue and the emails arrive once it is
// back. Killed while it holds a message it could not send yet (SMTP down,
// waiting to retry), the broker gives that message to the next process.
func TestFaultNotificationKilled(t *testing.T) {
	t.Parallel()
	s := startSuite(t)
	email, tok := s.newUser(t, "e2e_nkill")
	video := makeVideo(t, 3)

	// 1. Dead before the MP3s are ready.
	s.notification.Kill()
	jobs := []string{s.upload(t, tok, video), s.upload(t, tok, video)}
	s.waitDone(t, tok, jobs, 2*time.Minute)
	testenv.Eventually(t, 30*time.Second, "both mp3 messages waiting in the queue", func() bool {
		return s.queueDepth(t, s.mp3Queue) == 2
	})
	if n := len(s.mail.To(t, email)); n != 0 {
		t.Fatalf("%d emails while notification was dead", n)
	}
	s.notification.Restart(s.env)
	fids := []string{filepath.Base(jobs[0]), filepath.Base(jobs[1])}
	s.waitMailed(t, email, fids, time.Minute)

	// 2. Dead while it holds the message: the SMTP server is unreachable,
	// the message is unacked while it waits for its retry.
	s.smtp.Down()
	third := s.upload(t, tok, video)
	s.waitDone(t, tok, []string{third}, 2*time.Minute)
	testenv.Eventually(t, time.Minute, "notification retrying the email", func() bool {
		v, err := metric(s.notification, "notifications_total", `result="retried"`)
		return err == nil && v >= 1
	})
	s.notification.Kill()
	s.smtp.Up()
	s.notification.Restart(s.env)
	fids = append(fids, filepath.Base(third))
	s.waitMailed(t, email, fids, 2*time.Minute)
	s.waitQueuesEmpty(t, 30*time.Second)
	if fc := gridCounts(t, s.mp3sDB); fc != (fileCounts{files: 3}) {
		t.Fatalf("mp3s bucket: %+v, want 3 complete MP3s", fc)
	}
}

// A RabbitMQ restart (all connections dropped, new ones refused for a few
// seconds) while uploads and conversions are in flight: uploads during the
// outage get a clear 503 within the publish timeout, and everything
// accepted before or after completes with no service restarted.
func TestFaultRabbitMQRestart(t *testing.T) {
	t.Parallel()
	s := startSuiteWith(t, suiteOptions{env: map[string]string{
		"FFMPEG_PATH": realtimeFFmpeg(t), "PUBLISH_TIMEOUT": "3s",
	}})
	email, tok := s.newUser(t, "e2e_rmq")
	video := makeVideo(t, 4)
	pids := s.pids()

	var accepted []string
	for range 3 {
		accepted = append(accepted, s.upload(t, tok, video))
	}
	testenv.Eventually(t, time.Minute, "a conversion in flight", func() bool {
		st, _ := s.jobStatus(tok, accepted[0])
		return st == "converting"
	})

	s.rabbit.Down()
	down := time.Now()
	testenv.Eventually(t, 30*time.Second, "gateway not ready without the broker", func() bool { return !ready(s.gateway) })
	// A bounded wait (PUBLISH_TIMEOUT 3s), not an endless one: no answer
	// within 30 s fails as an error.
	r := s.tryUploadWithin(tok, video, 30*time.Second)
	if r.err != nil || r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "try again later") {
		t.Fatalf("upload during the outage: %d %q %v, want 503 try again later", r.status, r.body, r.err)
	}
	t.Logf("upload during the outage: %d %q after %s", r.status, r.body, r.took.Round(time.Millisecond))
	time.Sleep(time.Until(down.Add(5 * time.Second))) // scenario, not evidence: the outage lasts 5 s, as a broker restart does
	s.rabbit.Up()

	testenv.Eventually(t, time.Minute, "gateway ready again", func() bool { return ready(s.gateway) })
	for range 2 {
		accepted = append(accepted, s.upload(t, tok, video))
	}
	s.waitDone(t, tok, accepted, 3*time.Minute)
	fids := fidsOf(accepted)
	s.waitMailed(t, email, fids, 2*time.Minute)
	s.waitQueuesEmpty(t, time.Minute)
	if fc := gridCounts(t, s.mp3sDB); fc != (fileCounts{files: len(accepted)}) {
		t.Fatalf("mp3s bucket: %+v, want %d complete MP3s", fc, len(accepted))
	}
	// The refused upload left no job behind: the user sees exactly what was accepted.
	s.checkJobList(t, tok, fids)
	// Each service lost its broker connection and made a new one by itself.
	for _, p := range []*testenv.Proc{s.gateway, s.converter, s.notification} {
		if v, err := metric(p, "mq_reconnects_total"); err != nil || v < 1 {
			t.Errorf("%s reconnects: %v (%v), want ≥ 1", p.Name, v, err)
		}
	}
	alive(t, s.gateway, s.auth, s.converter, s.notification)
	if got := s.pids(); !slices.Equal(got, pids) {
		t.Errorf("processes changed from %v to %v: a service was restarted", pids, got)
	}
}

// FerretDB unreachable for a few seconds during conversions: the
// conversions in flight are retried or wait it out, and all complete once
// it is back, each once; an upload during the outage gets 503.
func TestFaultFerretDBDown(t *testing.T) {
	t.Parallel()
	s := startSuiteWith(t, suiteOptions{env: map[string]string{"FFMPEG_PATH": realtimeFFmpeg(t)}})
	email, tok := s.newUser(t, "e2e_mongo")
	video := makeVideo(t, 4)

	var accepted []string
	for range 3 {
		accepted = append(accepted, s.upload(t, tok, video))
	}
	testenv.Eventually(t, time.Minute, "a conversion in flight", func() bool {
		st, _ := s.jobStatus(tok, accepted[0])
		return st == "converting"
	})

	s.mongo.Down()
	down := time.Now()
	// A bounded wait, not an endless one: no answer within 45 s fails as
	// an error.
	r := s.tryUploadWithin(tok, video, 45*time.Second)
	if r.err != nil || r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "try again later") {
		t.Fatalf("upload during the outage: %d %q %v, want 503 try again later", r.status, r.body, r.err)
	}
	t.Logf("upload during the outage: %d %q after %s", r.status, r.body, r.took.Round(time.Millisecond))
	time.Sleep(time.Until(down.Add(6 * time.Second))) // scenario, not evidence: the outage lasts 6 s
	s.mongo.Up()

	testenv.Eventually(t, time.Minute, "gateway ready again", func() bool { return ready(s.gateway) })
	accepted = append(accepted, s.upload(t, tok, video))
	s.waitDone(t, tok, accepted, 3*time.Minute)
	fids := fidsOf(accepted)
	s.waitMailed(t, email, fids, 2*time.Minute)
	s.waitQueuesEmpty(t, time.Minute)
	if fc := gridCounts(t, s.mp3sDB); fc != (fileCounts{files: len(accepted)}) {
		t.Fatalf("mp3s bucket: %+v, want %d complete MP3s", fc, len(accepted))
	}
	s.checkJobList(t, tok, fids)
	// The outage began with a conversion in flight (waited for above). It
	// either failed and was retried, or rode the outage out: the seekable
	// input holds a small video's chunks, and the driver waits for the
	// server to come back before its write gives up. Both are right; which
	// one happens depends on where ffmpeg was when the server went.
	v, _ := metric(s.converter, "conversions_total", `result="retry"`)
	t.Logf("conversions retried after the outage: %v", v)
	alive(t, s.gateway, s.auth, s.converter, s.notification)
}

// Auth down: the gateway answers 503 within AUTH_TIMEOUT, both when auth is
// gone (connection refused) and when it hangs (SIGSTOP); back up, it works.
func TestFaultAuthDown(t *testing.T) {
	t.Parallel()
	s := startSuite(t)
	email, tok := s.newUser(t, "e2e_auth")

	check := func(what string) {
		t.Helper()
		// AUTH_TIMEOUT is 2s per call: both answers come within a bound
		// that allows for a loaded machine, or the requests fail with an
		// error.
		const within = 20 * time.Second
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		start := time.Now()
		code, body, err := s.tryLoginCtx(ctx, email, "pw")
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "auth service unavailable") {
			t.Fatalf("%s: login: %d %q %v, want 503 auth service unavailable within %s", what, code, body, err, within)
		}
		code, b, err := s.tryGetCtx(ctx, tok, "/jobs")
		if err != nil || code != http.StatusServiceUnavailable {
			t.Fatalf("%s: GET /jobs: %d %q %v, want 503 (login and /jobs within %s)", what, code, b, err, within)
		}
		t.Logf("%s: 503 for login and /jobs in %s", what, time.Since(start).Round(time.Millisecond))
	}

	// Frozen: connections are accepted but nothing answers.
	if err := syscall.Kill(s.auth.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	check("auth frozen")
	if err := syscall.Kill(s.auth.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Gone.
	s.auth.Kill()
	check("auth killed")
	testenv.Eventually(t, 30*time.Second, "gateway not ready without auth", func() bool { return !ready(s.gateway) })

	s.auth.Restart(s.env)
	testenv.Eventually(t, 30*time.Second, "gateway ready again", func() bool { return ready(s.gateway) })
	tok = s.login(t, email, "pw")
	if code, b := s.get(t, tok, "/jobs"); code != 200 {
		t.Fatalf("GET /jobs after auth came back: %d %q", code, b)
	}
	alive(t, s.gateway)
}

// Mailpit's SMTP port unreachable: the emails are retried and arrive once
// it is back, nothing dead-lettered.
func TestFaultMailpitDown(t *testing.T) {
	t.Parallel()
	s := startSuite(t)
	email, tok := s.newUser(t, "e2e_smtp")
	video := makeVideo(t, 3)

	s.smtp.Down()
	jobs := []string{s.upload(t, tok, video), s.upload(t, tok, video)}
	s.waitDone(t, tok, jobs, 2*time.Minute)
	var retried float64
	testenv.Eventually(t, time.Minute, "notification retrying both emails", func() bool {
		v, err := metric(s.notification, "notifications_total", `result="retried"`)
		retried = v
		return err == nil && v >= 2
	})
	// A few more tries, each one counted as failed: nothing got through.
	testenv.Eventually(t, time.Minute, "two more failed tries", func() bool {
		v, err := metric(s.notification, "notifications_total", `result="retried"`)
		return err == nil && v >= retried+2
	})
	if n := len(s.mail.To(t, email)); n != 0 {
		t.Fatalf("%d emails arrived while SMTP was down", n)
	}
	s.smtp.Up()
	got := s.waitMailed(t, email, fidsOf(jobs), 2*time.Minute)
	t.Logf("emails per MP3 after the outage: %v", got)
	s.waitQueuesEmpty(t, 30*time.Second)
	alive(t, s.notification)
}

// SIGTERM to every service while an upload, conversions and queued work are
// in flight: each exits 0 within its shutdown timeout, the upload in
// progress completes, no half-written MP3 is visible, and after a restart
// every accepted upload becomes exactly one MP3 with its email.
func TestFaultGracefulShutdown(t *testing.T) {
	t.Parallel()
	const shutdown = 4 * time.Second
	// Conversions (10 s at the clip's pace) outlast the shutdown timeout:
	// they are cancelled and requeued.
	s := startSuiteWith(t, suiteOptions{env: map[string]string{
		"FFMPEG_PATH": realtimeFFmpeg(t), "SHUTDOWN_TIMEOUT": shutdown.String(),
	}})
	email, tok := s.newUser(t, "e2e_term")
	video := makeVideo(t, 10)

	var accepted []string
	for range 3 {
		accepted = append(accepted, s.upload(t, tok, video))
	}
	testenv.Eventually(t, time.Minute, "two conversions in flight", func() bool {
		a, _ := s.jobStatus(tok, accepted[0])
		b, _ := s.jobStatus(tok, accepted[1])
		return a == "converting" && b == "converting"
	})

	// An upload in progress: the body trickles in over about a second.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	started := make(chan struct{})
	go func() {
		w, _ := mw.CreateFormFile("file", "slow.mp4")
		b, err := os.ReadFile(video)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		for i, step := 0, len(b)/10+1; i < len(b); i += step {
			if _, err := w.Write(b[i:min(i+step, len(b))]); err != nil {
				return
			}
			if i == 0 {
				close(started)
			}
			time.Sleep(100 * time.Millisecond) // scenario, not evidence: a slow client's body trickles in
		}
		pw.CloseWithError(mw.Close())
	}()
	// Auth counts every /validate it answers: one more than now is the
	// gateway's check of the slow upload's token, after which it stores.
	validated := func() float64 {
		n, _ := metric(s.auth, "http_requests_total", `route="/validate"`)
		return n
	}
	before := validated()
	slow := make(chan uploadResult, 1)
	go func() { slow <- s.postUpload(tok, pr, mw.FormDataContentType()) }()
	<-started
	testenv.Eventually(t, 30*time.Second, "the gateway validated the slow upload's token and is storing it", func() bool {
		return validated() > before
	})

	procs := []*testenv.Proc{s.gateway, s.auth, s.converter, s.notification}
	var wg sync.WaitGroup
	exited := make([]bool, len(procs))
	took := make([]time.Duration, len(procs))
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			exited[i] = p.Signal(syscall.SIGTERM, shutdown+20*time.Second)
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, p := range procs {
		if !exited[i] {
			t.Fatalf("%s did not exit within %s of SIGTERM", p.Name, shutdown+20*time.Second)
		}
		if p.ExitCode() != 0 {
			t.Errorf("%s exited %d after SIGTERM, want 0:\n%s", p.Name, p.ExitCode(), tail(p.Output(), 2000))
		}
		t.Logf("%s exited %d %s after SIGTERM", p.Name, p.ExitCode(), took[i].Round(time.Millisecond))
	}
	r := <-slow
	t.Logf("upload in flight at SIGTERM: %d %q %v", r.status, r.body, r.err)
	switch {
	case r.err == nil && r.status == 200:
		accepted = append(accepted, r.job)
	case r.err == nil && r.status == http.StatusServiceUnavailable:
		// Refused cleanly: acceptable, it is not counted as accepted.
	default:
		t.Errorf("upload in flight at SIGTERM: %d %q %v, want 200 (finished) or 503", r.status, r.body, r.err)
	}

	// Everything is down: whatever is in the mp3s bucket is complete.
	if fc := gridCounts(t, s.mp3sDB); fc.incomplete != 0 {
		t.Fatalf("after the shutdown the mp3s bucket has %d half-written files visible (%+v)", fc.incomplete, fc)
	}

	s.auth.Restart(s.env)
	s.gateway.Restart(s.env)
	s.converter.Restart(s.envWith(map[string]string{"FFMPEG_PATH": testenv.Getenv(t, "FFMPEG_PATH")}))
	s.notification.Restart(s.env)
	tok = s.login(t, email, "pw")
	s.waitDone(t, tok, accepted, 3*time.Minute)
	fids := fidsOf(accepted)
	s.waitMailed(t, email, fids, 2*time.Minute)
	s.waitQueuesEmpty(t, time.Minute)
	if fc := gridCounts(t, s.mp3sDB); fc != (fileCounts{files: len(accepted)}) {
		t.Fatalf("mp3s bucket: %+v, want %d complete MP3s and no stray chunks", fc, len(accepted))
	}
	if fc := gridCounts(t, s.videosDB); fc.incomplete != 0 || fc.strays != 0 {
		t.Fatalf("videos bucket: %+v: a half-stored upload was left behind", fc)
	}
	s.checkJobList(t, tok, fids)
}

// checkMP3 downloads the MP3 and checks it plays for about seconds.
func (s *suite) checkMP3(t *testing.T, tok, fid string, seconds float64) {
	t.Helper()
	status, mp3 := s.get(t, tok, "/download?fid="+fid)
	if status != 200 {
		t.Fatalf("download %s: %d %q", fid, status, mp3)
	}
	out := filepath.Join(t.TempDir(), fid+".mp3")
	if err := os.WriteFile(out, mp3, 0o600); err != nil {
		t.Fatal(err)
	}
	p := ffprobe(t, out)
	dur, _ := strconv.ParseFloat(p.Format.Duration, 64)
	if p.Format.FormatName != "mp3" || dur < seconds-0.5 || dur > seconds+0.5 {
		t.Fatalf("MP3 %s: format %q, %.2f s; want mp3 of %.0f ± 0.5 s", fid, p.Format.FormatName, dur, seconds)
	}
}

// checkJobList checks that the user's job list holds exactly fids, all done.
func (s *suite) checkJobList(t *testing.T, tok string, fids []string) {
	t.Helper()
	code, b := s.get(t, tok, "/jobs")
	var list []struct{ ID, Status string }
	if code != 200 || json.Unmarshal(b, &list) != nil {
		t.Fatalf("GET /jobs: %d %q", code, b)
	}
	want := map[string]bool{}
	for _, f := range fids {
		want[f] = true
	}
	for _, j := range list {
		if !want[j.ID] || j.Status != "done" {
			t.Errorf("GET /jobs lists %s (%s); want only the accepted uploads, done", j.ID, j.Status)
		}
		delete(want, j.ID)
	}
	if len(want) > 0 {
		t.Errorf("GET /jobs misses %v", want)
	}
}

// pids lists the processes of the suite's services.
func (s *suite) pids() []int {
	var out []int
	for _, p := range append([]*testenv.Proc{s.gateway, s.auth}, append(s.converters, s.notifications...)...) {
		out = append(out, p.PID())
	}
	return out
}

func fidsOf(jobPaths []string) []string {
	out := make([]string, len(jobPaths))
	for i, p := range jobPaths {
		out[i] = filepath.Base(p)
	}
	return out
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
