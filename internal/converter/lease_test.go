package converter

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/config"
	"mp3converter/internal/jobs"
	"mp3converter/internal/message"
	"mp3converter/internal/mq"
	"mp3converter/internal/testenv"
)

// countingFFmpeg is an ffmpeg wrapper that records each run (a line in the
// returned file) and, with slow, reads its input in real time (-re).
func countingFFmpeg(t *testing.T, ffmpeg string, slow bool) (path string, runs func() int) {
	t.Helper()
	dir := t.TempDir()
	path, log := filepath.Join(dir, "ffmpeg"), filepath.Join(dir, "runs")
	re := ""
	if slow {
		re = " -re"
	}
	script := "#!/bin/sh\necho run >> " + log + "\nexec " + ffmpeg + re + " \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, func() int {
		b, err := os.ReadFile(log)
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "run\n")
	}
}

// service starts a converter on conn (a connection of its own is another
// converter process, as the broker sees it) and returns it; the test's
// cleanup stops it.
func (h *harness) service(conn *mq.Conn, d Deps, opt Options) *Service {
	h.t.Helper()
	svc, err := New(d, opt)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, conn) }()
	var once sync.Once
	h.t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("converter stopped with %v", err)
			}
		})
	})
	return svc
}

// dialBroker opens another broker connection, closed at cleanup.
func (h *harness) dialBroker(url string) *mq.Conn {
	h.t.Helper()
	c, err := mq.New(url, h.log, mq.Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	testenv.Connected(h.t, c)
	return c
}

// waitConsumers waits until the video queue has n consumers.
func (h *harness) waitConsumers(n int) {
	h.t.Helper()
	testenv.Eventually(h.t, 10*time.Second, fmt.Sprintf("%d consumers on the video queue", n), func() bool {
		ch, err := h.amqp.Channel()
		if err != nil {
			h.t.Fatal(err)
		}
		defer ch.Close()
		q, err := ch.QueueDeclarePassive(h.videoQ, true, false, false, false, nil)
		if err != nil {
			h.t.Fatal(err)
		}
		return q.Consumers == n
	})
}

// noLease asserts that fid's lease was released.
func (h *harness) noLease(fid string) {
	h.t.Helper()
	testenv.Eventually(h.t, 5*time.Second, "the lease released", func() bool {
		_, err := h.jobs.GetLease(context.Background(), fid)
		return errors.Is(err, jobs.ErrNotFound)
	})
}

// checkOneSuccess asserts that the job is done and that exactly one
// message announced fid's MP3 and none reported a failure, with nothing
// dead-lettered or left on the video queue. Its caller has seen each of
// fid's messages reach its last handling (a result other than deferred
// counted, or the job done for the video's only message); checkOneSuccess
// waits for those handlings to end before it looks for a second message.
func (h *harness) checkOneSuccess(fid string) {
	h.t.Helper()
	j := h.waitJob(fid, time.Minute)
	if j.Status != jobs.Done || j.MP3FID == nil || *j.MP3FID != fid || j.Error != "" {
		h.t.Errorf("job %+v: want done without an error", j)
	}
	m := h.mp3Message(fid, 10*time.Second)
	if m.MP3FID == nil || *m.MP3FID != fid || m.Error != "" || m.Username != user {
		h.t.Errorf("mp3 message %+v: want the MP3, for %s, no error", m, user)
	}
	h.waitIdle()
	if m, ok := h.mp3MessageNow(fid); ok {
		h.t.Errorf("a second message for the video: %+v", m)
	}
	if n := h.queueDepth(mq.DeadLetterQueue(h.videoQ)); n != 0 {
		h.t.Errorf("%d dead-lettered messages", n)
	}
	if n := h.queueDepth(h.videoQ); n != 0 {
		h.t.Errorf("%d messages left on the video queue", n)
	}
	if n := h.result(resultFailed) + h.result(resultExhausted); n != 0 {
		h.t.Errorf("%d conversions reported as failed", n)
	}
}

// The same video's message handed to two converters at once (two
// processes, as the broker sees them: two connections, one consumer
// each): one converts it, the other waits for its lease and then finds
// the MP3 made. The end is one whole MP3 that ffprobe reads with the
// source's duration, ffmpeg run once, the job done, and exactly one
// success message on the mp3 queue (the one the notification service
// turns into the one email: counting messages at the converter's door
// covers the original's notification consumer too, which emails every
// message it gets), no failure reported.
func TestSameVideoTwoConvertersAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ffmpeg, runs := countingFFmpeg(t, h.ffmpeg, true) // 3 s per conversion: the two overlap
	opt := h.options()
	opt.FFmpegPath, opt.Consume.Concurrency = ffmpeg, 1
	h.service(h.conn, h.deps(), opt)
	h.service(h.dialBroker(h.url), h.deps(), opt)
	h.waitConsumers(2)

	fid := h.submitFile(media(t, "mp4"), "twice.mp4", user)
	h.publish(message.Conversion{VideoFID: fid, Username: user, Filename: "twice.mp4"}.Encode())

	h.waitResult(resultDone, 1, time.Minute)
	h.waitResult(resultAlready, 1, time.Minute)
	h.checkOneSuccess(fid)
	h.checkMP3(fid, media(t, "mp4"), "twice.mp3", user) // every chunk there, ffprobe's duration
	if n := runs(); n != 1 {
		t.Errorf("ffmpeg ran %d times, want once", n)
	}
	if n := h.result(resultDeferred); n < 1 {
		t.Errorf("deferred %d times, want the second converter to have waited", n)
	}
	if n := h.result(resultRetry); n != 0 {
		t.Errorf("%d transient failures, want none", n)
	}
	h.noLease(fid)
}

// While one converter converts a video, a second one handed the same video
// does not start: it defers the message while the lease is renewed (here
// every 0.5 s for a 1.5 s lease, through a 3 s conversion), then finds the
// MP3 made and only checks the bookkeeping.
func TestLeaseBlocksSecondConverterWhileFirstRuns(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ffA, runsA := countingFFmpeg(t, h.ffmpeg, true)
	ffB, runsB := countingFFmpeg(t, h.ffmpeg, false)
	optA := h.options()
	optA.FFmpegPath, optA.Consume.Concurrency, optA.LeaseTTL = ffA, 1, 1500*time.Millisecond
	a := h.service(h.conn, h.deps(), optA)

	fid := h.submitFile(media(t, "mp4-faststart"), "held.mp4", user)
	testenv.Eventually(t, 30*time.Second, "the first converter's ffmpeg started", func() bool { return runsA() == 1 })
	l, err := h.jobs.GetLease(context.Background(), fid)
	if err != nil || !strings.HasPrefix(l.Owner, a.self.Owner+"#") {
		t.Fatalf("lease while converting: %+v, %v; want the first converter's (%s#…)", l, err, a.self.Owner)
	}
	optB := optA
	optB.FFmpegPath = ffB
	h.service(h.dialBroker(h.url), h.deps(), optB)
	h.publish(message.Conversion{VideoFID: fid, Username: user, Filename: "held.mp4"}.Encode())

	var j jobs.Job
	if !testenv.Poll(time.Minute, func() bool {
		var err error
		if j, err = h.jobs.Get(context.Background(), fid); err != nil {
			t.Fatal(err)
		}
		if n := runsB(); n != 0 {
			t.Fatalf("the second converter ran ffmpeg while the first converted (job %s, %d%%)", j.Status, j.Progress)
		}
		if j.Status == jobs.Failed {
			t.Fatalf("job failed: %+v", j)
		}
		return j.Status == jobs.Done
	}) {
		t.Fatalf("job %+v after a minute, want done", j)
	}
	h.waitResult(resultAlready, 1, 30*time.Second)
	if n := h.result(resultDeferred); n < 1 {
		t.Errorf("deferred %d times, want ≥ 1", n)
	}
	h.checkOneSuccess(fid)
	h.checkMP3(fid, media(t, "mp4-faststart"), "held.mp3", user)
	if runsA() != 1 || runsB() != 0 {
		t.Errorf("ffmpeg runs: %d and %d, want 1 and 0", runsA(), runsB())
	}
	h.noLease(fid)
}

// A lease held elsewhere keeps the converter waiting, never failing: its
// message is deferred more often than MAX_ATTEMPTS allows attempts, and
// the user hears nothing until the conversion is done. It is taken over
// when it expires (a holder on another machine that stopped renewing it),
// or at once when its holder was a process on this machine that is gone.
func TestLeaseHeldElsewhere(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("dead holders are recognised through /proc")
	}
	boot, pidns, _, _ := selfIdentity()
	if boot == "" || pidns == "" {
		t.Skip("no boot id or PID namespace in /proc")
	}
	for _, tc := range []struct {
		name string
		// holder returns the lease's holder and a func that makes it go
		// away (stop renewing, die); until is when the lease expires.
		holder func(t *testing.T) (h jobs.Holder, gone func())
		until  time.Duration
		// takenBefore: the converter must have taken the lease over
		// before it expired.
		takenBefore bool
	}{
		{"another machine, until its lease expires", func(*testing.T) (jobs.Holder, func()) {
			return jobs.Holder{Owner: "far-away/1#1", Host: "far-away", Boot: "another-boot", PIDNS: pidns, PID: 1, Start: 1}, func() {}
		}, 4 * time.Second, false},
		{"a process on this machine, until it dies", func(t *testing.T) (jobs.Holder, func()) {
			cmd := exec.Command("sleep", "60")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			start, ok := processStart(cmd.Process.Pid)
			if !ok {
				t.Fatalf("no start time for pid %d", cmd.Process.Pid)
			}
			host, _ := os.Hostname()
			h := jobs.Holder{Owner: "sleeper#1", Host: host, Boot: boot, PIDNS: pidns, PID: cmd.Process.Pid, Start: start}
			return h, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
		}, time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			ffmpeg, runs := countingFFmpeg(t, h.ffmpeg, false)
			opt := h.options()
			opt.FFmpegPath, opt.Consume.MaxAttempts = ffmpeg, 2
			ctx := context.Background()

			fid := h.submitFile(media(t, "mp4-faststart"), "elsewhere.mp4", user)
			holder, gone := tc.holder(t)
			if _, err := h.jobs.TakeLease(ctx, fid, holder, tc.until, nil); err != nil {
				t.Fatal(err)
			}
			// It was writing the MP3 too: its claim on the file ID and a
			// chunk. The converter that takes its lease over breaks the
			// claim at once, expired or not, and removes the chunk.
			if _, err := h.mp3sDB.Collection("fs.uploads").InsertOne(ctx, bson.D{{Key: "_id", Value: mustObjectID(t, fid)},
				{Key: "writer", Value: holder.Owner}, {Key: "until", Value: time.Now().Add(time.Hour)}}); err != nil {
				t.Fatal(err)
			}
			if _, err := h.mp3sDB.Collection("fs.chunks").InsertOne(ctx, bson.D{{Key: "_id", Value: bson.NewObjectID()},
				{Key: "files_id", Value: mustObjectID(t, fid)}, {Key: "n", Value: int32(0)},
				{Key: "data", Value: bson.Binary{Data: []byte("half an mp3")}}}); err != nil {
				t.Fatal(err)
			}
			leased := time.Now()
			h.start(h.deps(), opt)

			// Deferred again and again (more than MaxAttempts), never failed.
			h.waitResult(resultDeferred, 3, 30*time.Second)
			if runs() != 0 {
				t.Fatal("ffmpeg ran while the lease was held")
			}
			if j, _ := h.jobs.Get(ctx, fid); j.Status != jobs.Queued {
				t.Errorf("job %+v while the lease is held elsewhere, want queued", j)
			}
			if m, ok := h.mp3MessageNow(fid); ok { // the deferrals have ended, and publish nothing
				t.Fatalf("message %+v while the lease is held elsewhere", m)
			}
			gone()
			j := h.waitJob(fid, time.Minute)
			took := time.Since(leased)
			if tc.takenBefore && took > 30*time.Second {
				t.Errorf("converted %s after the lease was taken: its dead holder's lease was not taken over", took)
			}
			if !tc.takenBefore && took < tc.until {
				t.Errorf("converted %s after the lease was taken, before it expired (%s)", took, tc.until)
			}
			if j.Status != jobs.Done {
				t.Fatalf("job %+v", j)
			}
			h.checkOneSuccess(fid)
			h.checkMP3(fid, media(t, "mp4-faststart"), "elsewhere.mp3", user)
			if runs() != 1 {
				t.Errorf("ffmpeg ran %d times, want once", runs())
			}
			h.noLease(fid)
		})
	}
}

// A converter whose connection to the broker dies while it converts (the
// broker gives the message back, to hand it to another converter) stops at
// once: ffmpeg is killed, the lease released. After the reconnect the
// message comes back and the video ends as one MP3, one success message.
func TestConversionStopsWhenItsDeliveryIsLost(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	purl, proxy := testenv.RabbitMQProxy(t)
	opt := h.options()
	opt.FFmpegPath = slowFFmpeg(t, h.ffmpeg)
	opt.SeekableInput = false    // finds ffmpeg by its temporary file
	opt.ScratchDir = t.TempDir() // named on ffmpeg's command line
	h.service(h.dialBroker(purl), h.deps(), opt)

	fid := h.submitFile(media(t, "mp4"), "cut.mp4", user) // not faststart: from a file in ScratchDir
	testenv.Eventually(t, 30*time.Second, "ffmpeg converting", func() bool { return ffmpegRunning(t, opt.ScratchDir) })
	proxy.Down()
	cut := time.Now()
	testenv.Eventually(t, 3*time.Second, "ffmpeg killed after the connection was cut", func() bool {
		return !ffmpegRunning(t, opt.ScratchDir)
	})
	t.Logf("ffmpeg gone %s after the cut", time.Since(cut).Round(time.Millisecond))
	h.noLease(fid)
	if files, _ := h.countMP3s(fid); files != 0 {
		t.Errorf("%d MP3 files after the cut", files)
	}
	proxy.Up()
	h.checkOneSuccess(fid)
	h.checkMP3(fid, media(t, "mp4"), "cut.mp3", user)
}

func TestJobTimeoutBelowConsumerTimeout(t *testing.T) {
	cfg, err := config.LoadFrom[Config](map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.JobTimeout != 25*time.Minute || cfg.LeaseTTL != 2*time.Minute || cfg.BrokerConsumerTimeout != 30*time.Minute {
		t.Errorf("JOB_TIMEOUT %s, JOB_LEASE_TTL %s, BROKER_CONSUMER_TIMEOUT %s; want 25m, 2m, 30m",
			cfg.JobTimeout, cfg.LeaseTTL, cfg.BrokerConsumerTimeout)
	}
	if got := cfg.LongestUnacked(); got >= cfg.BrokerConsumerTimeout {
		t.Errorf("defaults: a delivery may stay unacked %s, not below the consumer timeout %s", got, cfg.BrokerConsumerTimeout)
	}
	for _, tc := range []struct {
		env  map[string]string
		want string // "" = accepted
	}{
		{map[string]string{}, ""},
		{map[string]string{"JOB_TIMEOUT": "1h"}, "BROKER_CONSUMER_TIMEOUT"},
		{map[string]string{"JOB_TIMEOUT": "28m"}, "must stay below"},
		{map[string]string{"JOB_TIMEOUT": "1h", "BROKER_CONSUMER_TIMEOUT": "2h"}, ""},
		{map[string]string{"JOB_TIMEOUT": "1h", "BROKER_CONSUMER_TIMEOUT": "0"}, ""},
		{map[string]string{"MAX_RETRY_BACKOFF": "5m"}, "MAX_RETRY_BACKOFF"},
		{map[string]string{"JOB_LEASE_TTL": "1s"}, "JOB_LEASE_TTL"},
		{map[string]string{"BROKER_CONSUMER_TIMEOUT": "-1s"}, "BROKER_CONSUMER_TIMEOUT"},
	} {
		cfg, err := config.LoadFrom[Config](tc.env)
		if err == nil {
			_, err = cfg.Options()
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v refused: %v", tc.env, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: err %v, want one naming %q", tc.env, err, tc.want)
		}
	}
}

// The deferrals a conversion may spend waiting for another's lease cover
// that other conversion's whole life, twice.
func TestDeferralsCoverALeaseHolder(t *testing.T) {
	for _, tc := range []struct{ job, ttl, base, limit time.Duration }{
		{25 * time.Minute, 2 * time.Minute, 2 * time.Second, time.Minute},
		{2 * time.Minute, 2 * time.Minute, 100 * time.Millisecond, 500 * time.Millisecond},
		{time.Minute, 3 * time.Second, time.Second, time.Second},
	} {
		n := maxDeferrals(tc.job, tc.ttl, tc.base, tc.limit)
		var total time.Duration
		for i := 1; i <= n; i++ {
			total += min(tc.base<<min(i-1, 30), tc.limit)
		}
		if want := 2 * (tc.job + tc.ttl + reportMargin); total < want || total > want+2*tc.limit {
			t.Errorf("%+v: %d deferrals wait %s in all, want about %s", tc, n, total, want)
		}
	}
}
