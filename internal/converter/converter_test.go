package converter

import (
	"bytes"
	"context"
	"crypto/rand"
	"math"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"mp3converter/internal/ffmpeg/ffmpegtest"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/message"
	"mp3converter/internal/mq"
	"mp3converter/internal/testenv"
)

const user = "alice@example.com"

// Every container the tests generate converts to an MP3 of the source's
// duration: AAC, Opus and Vorbis are encoded at MP3_BITRATE, MP3 (in AVI) is
// copied as it is.
func TestConvertsEveryFormat(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start(h.deps(), h.options())
	cases := []struct {
		media, filename string
		copied          bool
	}{
		{"mp4", "holiday.mp4", false},
		{"mp4-faststart", "faststart.mp4", false},
		{"webm", "clip.webm", false},
		{"avi-mp3", "old.avi", true},
		{"mov", "phone.MOV", false},
		{"mkv", "show.mkv", false},
		// Further containers the demuxer whitelist must let through.
		{"ts", "broadcast.ts", false},
		{"mp3", "song.mp3", true},
		{"wav", "take.wav", false},
		{"ogg", "voice.ogg", false},
	}
	fids := make([]string, len(cases))
	for i, c := range cases {
		fids[i] = h.submitFile(media(t, c.media), c.filename, user)
	}
	for i, c := range cases {
		t.Run(c.media, func(t *testing.T) {
			fid := fids[i]
			j := h.waitJob(fid, time.Minute)
			if j.Status != jobs.Done || j.Progress != 100 || j.MP3FID == nil || *j.MP3FID != fid || j.Error != "" {
				t.Fatalf("job %+v: want done, 100%%, mp3_fid = video_fid", j)
			}
			m := h.mp3Message(fid, 10*time.Second)
			if m.MP3FID == nil || *m.MP3FID != fid || m.Username != user || m.Filename != c.filename || m.Error != "" {
				t.Errorf("mp3 message %+v: want mp3_fid %s, username, filename, no error", m, fid)
			}
			wantName := strings.TrimSuffix(c.filename, c.filename[strings.LastIndex(c.filename, "."):]) + ".mp3"
			got := h.checkMP3(fid, media(t, c.media), wantName, user)
			src := probeAudio(t, media(t, c.media))
			var meta mp3Meta
			id, _ := bson.ObjectIDFromHex(fid)
			info, err := h.mp3s.Stat(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if err := bson.Unmarshal(info.Metadata, &meta); err != nil {
				t.Fatal(err)
			}
			if meta.Copied != c.copied {
				t.Errorf("copied = %v, want %v", meta.Copied, c.copied)
			}
			want := 128000
			if c.copied {
				want = src.BitRate // 192k: not re-encoded
			}
			if math.Abs(float64(got.BitRate-want)) > 0.03*float64(want) {
				t.Errorf("MP3 bitrate %d, want %d", got.BitRate, want)
			}
		})
	}
	if n := h.queueDepth(mq.DeadLetterQueue(h.videoQ)); n != 0 {
		t.Errorf("%d dead-lettered messages", n)
	}
	if entries, _ := os.ReadDir(h.scratch); len(entries) != 0 {
		t.Errorf("scratch directory not cleaned: %v", entries)
	}
}

// A faststart MP4 is piped to ffmpeg while it downloads: it converts even
// with no usable scratch directory, which a non-faststart MP4 needs.
func TestFaststartStreamsWithoutScratchSpace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	opt := h.options()
	opt.SeekableInput = false // the pipe and temporary-file paths
	opt.ScratchDir = "/nonexistent/scratch"
	opt.Consume.MaxAttempts = 1
	h.start(h.deps(), opt)

	h.converts("mp4-faststart", "fast.mp4")

	// The other needs the scratch directory: a transient failure, here on
	// the last attempt, so reported and dead-lettered.
	slow := h.submitFile(media(t, "mp4"), "slow.mp4", user)
	if j := h.waitJob(slow, time.Minute); j.Status != jobs.Failed {
		t.Fatalf("non-faststart job %+v, want failed", j)
	}
}

// Inputs that cannot give an MP3 fail for good, with a reason the user
// understands, without retries.
func TestBadInputFailsWithReason(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start(h.deps(), h.options())

	random := make([]byte, 300<<10)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	plain, err := os.ReadFile(media(t, "mp4"))
	if err != nil {
		t.Fatal(err)
	}
	fast, err := os.ReadFile(media(t, "mp4-faststart"))
	if err != nil {
		t.Fatal(err)
	}
	noAudio, err := os.ReadFile(media(t, "noaudio"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"no audio", noAudio, "the video has no audio track"},
		{"random bytes", random, "not a video or audio file ffmpeg can read"},
		{"zero bytes", nil, "the file is empty"},
		{"truncated mp4", plain[:len(plain)/2], "not a video or audio file ffmpeg can read"},
		{"truncated faststart mp4", fast[:len(fast)/2], "damaged or truncated"},
		{"text", []byte("hello, this is not a video\n"), "not a video or audio file ffmpeg can read"},
	}
	fids := make([]string, len(cases))
	for i, c := range cases {
		fids[i] = h.submit(bytes.NewReader(c.data), "bad.mp4", user)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { h.checkFailed(fids[i], c.want) })
	}
	if n := h.result(resultRetry); n != 0 {
		t.Errorf("%d retries of permanent failures", n)
	}
}

// A video longer than MAX_DURATION is refused with a clear reason.
func TestDurationCap(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	opt := h.options()
	opt.MaxDuration = 2 * time.Second
	h.start(h.deps(), opt)
	for _, m := range []string{"mp4", "mp4-faststart"} {
		fid := h.submitFile(media(t, m), "long.mp4", user)
		h.checkFailed(fid, "the video is longer than the 2s limit")
	}
}

// The common videos convert without ffprobe (ffmpeg says what it opened);
// an MP3, copied as it is, needs it.
func TestNoProbeForCommonVideos(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	opt := h.options()
	opt.FFprobePath = "/nonexistent/ffprobe"
	opt.Consume.MaxAttempts = 1
	h.start(h.deps(), opt)
	for _, m := range []string{"mp4", "mkv", "webm"} {
		fid := h.submitFile(media(t, m), "a."+m, user)
		if j := h.waitJob(fid, time.Minute); j.Status != jobs.Done {
			t.Errorf("%s: job %+v, want done without ffprobe", m, j)
		}
	}
	fid := h.submitFile(media(t, "mp3"), "a.mp3", user)
	if j := h.waitJob(fid, time.Minute); j.Status != jobs.Failed || strings.Contains(j.Error, "not a video") {
		t.Errorf("mp3: job %+v, want failed (transient: ffprobe is missing)", j)
	}
}

// A video whose audio stops early is not "truncated": the audio's own
// duration counts, not the container's, also against MAX_DURATION.
func TestAudioShorterThanVideo(t *testing.T) {
	t.Parallel()
	for _, limit := range []time.Duration{time.Hour, 2 * time.Second} {
		t.Run(limit.String(), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			opt := h.options()
			opt.MaxDuration = limit
			h.start(h.deps(), opt)
			h.converts("shortaudio", "talk.mp4")
		})
	}
}

// Messages that cannot be understood are acked, not retried; where a job
// and a user are known they are told.
func TestMalformedMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start(h.deps(), h.options())
	ctx := context.Background()

	h.publish([]byte(`{"video_fid": "`))                                        // broken JSON
	h.publish([]byte(`{"username": "` + user + `"}`))                           // no video_fid
	h.publish([]byte(`{"video_fid": "not-an-id", "username": "` + user + `"}`)) // bad video_fid
	h.publish([]byte(`["an", "array"]`))
	h.waitResult(resultFailed, 4, 20*time.Second)

	// A valid video_fid without username: the job's owner is told.
	fid := bson.NewObjectID().Hex()
	if err := h.jobs.Create(ctx, jobs.Job{ID: fid, Username: user, Filename: "x.mp4", VideoFID: fid}); err != nil {
		t.Fatal(err)
	}
	h.publish([]byte(`{"video_fid": "` + fid + `", "mp3_fid": null}`))
	h.checkFailed(fid, "malformed")

	// A video_fid whose video does not exist (deleted).
	gone := bson.NewObjectID().Hex()
	if err := h.jobs.Create(ctx, jobs.Job{ID: gone, Username: user, Filename: "gone.mp4", VideoFID: gone}); err != nil {
		t.Fatal(err)
	}
	h.publish(message.Conversion{VideoFID: gone, Username: user, Filename: "gone.mp4"}.Encode())
	h.checkFailed(gone, "the video was not found")

	// Nothing else was published, nothing retried.
	h.drainMP3Queue()
	h.mu.Lock()
	extra := len(h.consumed)
	h.mu.Unlock()
	if extra != 0 {
		t.Errorf("%d unexpected mp3 messages: %+v", extra, h.consumed)
	}
	if n := h.result(resultRetry); n != 0 {
		t.Errorf("%d retries", n)
	}
	if n := h.queueDepth(h.videoQ); n != 0 {
		t.Errorf("%d messages left on the video queue", n)
	}
}

// A redelivered message never makes a second MP3. If the converter died
// after storing the MP3 (job not done, nothing published), the redelivery
// publishes and marks the job done; if it had finished (ack lost), the
// redelivery changes nothing.
func TestRedeliveryMakesNoSecondMP3(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start(h.deps(), h.options())
	ctx := context.Background()

	// Finished, then redelivered.
	fid := h.submitFile(media(t, "mp4"), "a.mp4", user)
	if j := h.waitJob(fid, time.Minute); j.Status != jobs.Done {
		t.Fatalf("job %+v", j)
	}
	h.mp3Message(fid, 10*time.Second)
	h.publish(message.Conversion{VideoFID: fid, Username: user, Filename: "a.mp4"}.Encode())
	h.waitResult(resultAlready, 1, 20*time.Second)
	h.checkMP3(fid, media(t, "mp4"), "a.mp3", user)
	// Both handlings have ended (the first one's job is done, the
	// redelivery's result is counted): a second message would be there.
	if m, ok := h.mp3MessageNow(fid); ok {
		t.Errorf("second mp3 message %+v for a finished job", m)
	}

	// Died after the upload: the MP3 is there, the job is converting.
	f, err := os.Open(media(t, "mp4"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := h.videos.Upload(ctx, "b.mp4", f, bson.M{"owner": user}, gridfs.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fid2 := info.ID.Hex()
	if err := h.jobs.Create(ctx, jobs.Job{ID: fid2, Username: user, Filename: "b.mp4", VideoFID: fid2, Status: jobs.Converting}); err != nil {
		t.Fatal(err)
	}
	// The MP3 the first converter stored (any content will do: it must be
	// kept as it is).
	mp3Body := []byte("ID3 the stored mp3")
	if _, err := h.mp3s.Upload(ctx, "b.mp3", bytes.NewReader(mp3Body), bson.M{"owner": user}, gridfs.UploadOptions{ID: info.ID}); err != nil {
		t.Fatal(err)
	}
	h.publish(message.Conversion{VideoFID: fid2, Username: user, Filename: "b.mp4"}.Encode())
	if j := h.waitJob(fid2, 30*time.Second); j.Status != jobs.Done || j.MP3FID == nil || *j.MP3FID != fid2 {
		t.Fatalf("job %+v: want done", j)
	}
	m := h.mp3Message(fid2, 10*time.Second)
	if m.MP3FID == nil || *m.MP3FID != fid2 {
		t.Errorf("mp3 message %+v", m)
	}
	if files, _ := h.countMP3s(fid2); files != 1 {
		t.Errorf("%d MP3 files, want 1", files)
	}
	st, err := h.mp3s.Stat(ctx, info.ID)
	if err != nil || st.Length != int64(len(mp3Body)) {
		t.Errorf("stored MP3 replaced: %+v, %v", st, err)
	}
}

// Chunks left by a converter killed in the middle of an upload neither
// block the retry nor end up in its MP3.
func TestStrayChunksDoNotBlockRetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	f, err := os.Open(media(t, "mp4"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := h.videos.Upload(ctx, "c.mp4", f, bson.M{"owner": user}, gridfs.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fid := info.ID.Hex()
	if err := h.jobs.Create(ctx, jobs.Job{ID: fid, Username: user, Filename: "c.mp4", VideoFID: fid}); err != nil {
		t.Fatal(err)
	}
	var strays []any
	for n := range 3 {
		strays = append(strays, bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "files_id", Value: info.ID},
			{Key: "n", Value: int32(n + 5)}, {Key: "data", Value: bson.Binary{Data: bytes.Repeat([]byte{0xAA}, 1000)}}})
	}
	if _, err := h.mp3sDB.Collection("fs.chunks").InsertMany(ctx, strays); err != nil {
		t.Fatal(err)
	}
	h.start(h.deps(), h.options())
	h.publish(message.Conversion{VideoFID: fid, Username: user, Filename: "c.mp4"}.Encode())
	if j := h.waitJob(fid, time.Minute); j.Status != jobs.Done {
		t.Fatalf("job %+v", j)
	}
	h.checkMP3(fid, media(t, "mp4"), "c.mp3", user) // checks the chunk count too
}

// MongoDB unreachable: the message is retried with backoff and converts
// once MongoDB is back.
func TestTransientMongoFailureIsRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	u, err := url.Parse(testenv.Getenv(t, "MONGODB_URI"))
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "27017")
	}
	proxy := testenv.NewProxy(t, host)
	pu := *u
	pu.Host = proxy.Addr()
	client, err := mongo.Connect(options.Client().ApplyURI(pu.String()).
		SetServerSelectionTimeout(500 * time.Millisecond).SetTimeout(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	videos, err := gridfs.NewBucket(client.Database(h.videosDB.Name()))
	if err != nil {
		t.Fatal(err)
	}
	mp3s, err := gridfs.NewBucket(client.Database(h.mp3sDB.Name()))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jobs.NewStore(client.Database(h.videosDB.Name()))
	if err != nil {
		t.Fatal(err)
	}
	d := h.deps()
	d.Videos, d.MP3s, d.Jobs = videos, mp3s, js
	opt := h.options()
	opt.Consume.MaxAttempts = 10
	proxy.Down()
	h.start(d, opt)

	fid := h.submitFile(media(t, "mp4"), "d.mp4", user)
	h.waitResult(resultRetry, 2, 30*time.Second)
	proxy.Up()
	if j := h.waitJob(fid, time.Minute); j.Status != jobs.Done {
		t.Fatalf("job %+v: want done after MongoDB came back", j)
	}
	h.mp3Message(fid, 10*time.Second)
	h.checkMP3(fid, media(t, "mp4"), "d.mp3", user)
	if n := h.queueDepth(mq.DeadLetterQueue(h.videoQ)); n != 0 {
		t.Errorf("%d dead-lettered", n)
	}
}

// A transient failure that outlasts MAX_ATTEMPTS: on the last attempt the
// job fails with a reason and the user is told; the message is
// dead-lettered, not lost.
func TestExhaustedAttemptsAreReportedAndDeadLettered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	opt := h.options()
	opt.Consume.MaxAttempts = 2
	opt.FFmpegPath = "/nonexistent/ffmpeg" // a broken deployment: not the video's fault
	h.start(h.deps(), opt)

	fid := h.submitFile(media(t, "mp4"), "e.mp4", user)
	j := h.waitJob(fid, 30*time.Second)
	if j.Status != jobs.Failed || !strings.Contains(j.Error, "failed 2 times") {
		t.Errorf("job %+v: want failed after 2 attempts", j)
	}
	m := h.mp3Message(fid, 10*time.Second)
	if m.MP3FID != nil || m.Error == "" {
		t.Errorf("message %+v: want a failure", m)
	}
	dead := mq.DeadLetterQueue(h.videoQ)
	if !testenv.Poll(10*time.Second, func() bool { return h.queueDepth(dead) == 1 }) {
		t.Fatalf("dead-letter queue has %d messages, want 1", h.queueDepth(dead))
	}
	if h.result(resultExhausted) != 1 || h.result(resultRetry) != 1 {
		t.Errorf("results: exhausted %d, retry %d; want 1 and 1", h.result(resultExhausted), h.result(resultRetry))
	}
}

// The job shows its progress while converting, at most about once per
// ProgressInterval.
func TestProgressIsReported(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	rec := &recordingJobs{jobStore: h.jobs}
	d := h.deps()
	d.Jobs = rec
	opt := h.options()
	opt.FFmpegPath = slowFFmpeg(t, h.ffmpeg) // the 3 s clip takes 3 s
	opt.ProgressInterval = 500 * time.Millisecond
	h.start(d, opt)

	fid := h.submitFile(media(t, "mp4-faststart"), "p.mp4", user)
	sawConverting := false
	var j jobs.Job
	testenv.Poll(time.Minute, func() bool {
		var err error
		if j, err = h.jobs.Get(context.Background(), fid); err != nil {
			t.Fatal(err)
		}
		if j.Status == jobs.Converting && j.Progress > 0 && j.Progress < 100 {
			sawConverting = true
		}
		return j.Status == jobs.Done || j.Status == jobs.Failed
	})
	if j.Status != jobs.Done {
		t.Fatalf("job %+v", j)
	}
	if !sawConverting {
		t.Error("never saw the job converting with 0 < progress < 100")
	}
	vals := rec.values()
	if len(vals) < 3 || len(vals) > 2+ffmpegtest.ClipSeconds*2+1 {
		t.Errorf("progress updates %v: want a few (about two per second)", vals)
	}
	for i := 1; i < len(vals); i++ {
		if vals[i] <= vals[i-1] || vals[i] > 99 {
			t.Errorf("progress updates %v: want increasing, below 100", vals)
			break
		}
	}
}

// A converter stopped in the middle of a job (its shutdown timeout passes)
// kills ffmpeg, removes its temporary file and hands the message back;
// another converter then produces exactly one MP3.
func TestKilledMidJobAnotherConverterFinishes(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	optA := h.options()
	optA.FFmpegPath = slowFFmpeg(t, h.ffmpeg)
	optA.SeekableInput = false // finds ffmpeg by its temporary file
	optA.ScratchDir = t.TempDir()
	optA.Consume.ShutdownTimeout = 300 * time.Millisecond
	stopA := h.start(h.deps(), optA)

	fid := h.submitFile(media(t, "mp4"), "k.mp4", user) // not faststart: goes through a temporary file
	testenv.Eventually(t, 30*time.Second, "ffmpeg started", func() bool { return ffmpegRunning(t, optA.ScratchDir) })
	// Well into the conversion: ffmpeg has converted part of the clip.
	testenv.Eventually(t, 30*time.Second, "the job's progress above 0", func() bool {
		j, err := h.jobs.Get(context.Background(), fid)
		if err != nil {
			t.Fatal(err)
		}
		return j.Progress > 0
	})
	stopA()

	if ffmpegRunning(t, optA.ScratchDir) {
		t.Error("ffmpeg still running after the converter stopped")
	}
	if entries, _ := os.ReadDir(optA.ScratchDir); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
	if j, _ := h.jobs.Get(context.Background(), fid); j.Status != jobs.Converting {
		t.Errorf("job after the kill: %+v, want still converting", j)
	}
	if files, _ := h.countMP3s(fid); files != 0 {
		t.Errorf("%d MP3 files after the kill", files)
	}
	h.waitIdle() // the killed handling has ended: a message it sent would be there
	if m, ok := h.mp3MessageNow(fid); ok {
		t.Errorf("message %+v after the kill", m)
	}

	h.start(h.deps(), h.options())
	if j := h.waitJob(fid, time.Minute); j.Status != jobs.Done {
		t.Fatalf("job %+v, want done by the second converter", j)
	}
	m := h.mp3Message(fid, 10*time.Second)
	if m.MP3FID == nil || *m.MP3FID != fid {
		t.Errorf("message %+v", m)
	}
	h.checkMP3(fid, media(t, "mp4"), "k.mp3", user)
	h.waitIdle() // the second converter's handling has ended too
	if m, ok := h.mp3MessageNow(fid); ok {
		t.Errorf("second message %+v", m)
	}
}

// A progress write still running when the conversion ends is waited for,
// not abandoned: a server may apply an abandoned write after the job is
// marked done and leave it "converting" for good (seen on FerretDB).
func TestProgressWriteNotAbandonedAtEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	slow := &slowProgressJobs{jobStore: h.jobs, delay: 2 * time.Second}
	t.Cleanup(slow.inflight.Wait)
	d := h.deps()
	d.Jobs = slow
	opt := h.options()
	opt.ProgressInterval = 50 * time.Millisecond
	opt.FFmpegPath = slowFFmpeg(t, h.ffmpeg)
	h.start(d, opt)

	fid := h.submitFile(media(t, "mp4"), "p.mp4", user)
	j := h.waitJob(fid, time.Minute)
	if j.Status != jobs.Done {
		t.Fatalf("job %+v: want done", j)
	}
	if n := slow.abandoned.Load(); n != 0 {
		t.Errorf("%d progress writes abandoned while the server was still applying them", n)
	}
	slow.inflight.Wait()
	if j, err := h.jobs.Get(context.Background(), fid); err != nil || j.Status != jobs.Done {
		t.Errorf("job after every write landed: %+v, %v; want done", j, err)
	}
}

// A video whose message came back unsettled more than MaxRedeliveries times
// (converters kept dying on it) is not converted again: the message goes to
// the dead-letter queue, the job fails and the user is told.
func TestRedeliveryLimitFailsTheJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()
	// poison stores a video and its job, and queues its message as the last
	// converter to die on it left it: counted twice already.
	poison := func(name string) string {
		info, err := h.videos.Upload(ctx, name, strings.NewReader("not really a video"), bson.M{"owner": user}, gridfs.UploadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fid := info.ID.Hex()
		if err := h.jobs.Create(ctx, jobs.Job{ID: fid, Username: user, Filename: name, VideoFID: fid, Status: jobs.Converting}); err != nil {
			t.Fatal(err)
		}
		testenv.Publish(t, h.url, h.videoQ, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: fid, Headers: amqp.Table{mq.HeaderRedeliveries: int32(2)},
			Body: message.Conversion{VideoFID: fid, Username: user, Filename: name}.Encode(),
		})
		return fid
	}
	fid := poison("crash.mp4")
	// This one crashed after its MP3 was stored: it is reported done.
	stored := poison("stored.mp4")
	if _, err := h.mp3s.Upload(ctx, "stored.mp3", strings.NewReader("ID3 mp3"), bson.M{"owner": user},
		gridfs.UploadOptions{ID: mustObjectID(t, stored)}); err != nil {
		t.Fatal(err)
	}
	// Taken but never settled: a closed channel gives them back marked
	// redelivered.
	testenv.Eventually(t, 10*time.Second, "the messages queued", func() bool { return h.queueDepth(h.videoQ) == 2 })
	ch, err := h.amqp.Channel()
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, ok, err := ch.Get(h.videoQ, false); err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
	}
	ch.Close()

	opt := h.options()
	opt.Consume.MaxRedeliveries = 2
	h.start(h.deps(), opt)
	const want = "interrupted again and again"
	j := h.waitJob(fid, 30*time.Second)
	if j.Status != jobs.Failed || !strings.Contains(j.Error, want) {
		t.Errorf("job %+v: want failed with %q", j, want)
	}
	if m := h.mp3Message(fid, 10*time.Second); m.MP3FID != nil || !strings.Contains(m.Error, want) || m.Username != user {
		t.Errorf("failure message %+v: want mp3_fid null and %q", m, want)
	}
	if j := h.waitJob(stored, 30*time.Second); j.Status != jobs.Done || j.MP3FID == nil || *j.MP3FID != stored {
		t.Errorf("job with a stored MP3 %+v: want done", j)
	}
	if m := h.mp3Message(stored, 10*time.Second); m.MP3FID == nil || *m.MP3FID != stored || m.Error != "" {
		t.Errorf("message for the stored MP3 %+v: want its mp3_fid, no error", m)
	}
	testenv.Eventually(t, 10*time.Second, "both messages dead-lettered", func() bool {
		return h.queueDepth(mq.DeadLetterQueue(h.videoQ)) == 2
	})
	if files, _ := h.countMP3s(fid); files != 0 || h.queueDepth(h.videoQ) != 0 {
		t.Errorf("%d MP3s, %d messages left on the queue; want none", files, h.queueDepth(h.videoQ))
	}
}

func mustObjectID(t *testing.T, hex string) bson.ObjectID {
	t.Helper()
	id, err := bson.ObjectIDFromHex(hex)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
