package converter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"mp3converter/internal/ffmpeg/ffmpegtest"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/message"
	"mp3converter/internal/mq"
	"mp3converter/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(ffmpegtest.Main(m)) }

// media returns the path of a generated clip (see ffmpegtest.Media).
var media = ffmpegtest.Media

// audioInfo is what ffprobe reports of a file's first audio stream.
type audioInfo struct {
	Codec    string
	Duration float64
	BitRate  int
}

func probeAudio(t testing.TB, path string) audioInfo {
	t.Helper()
	ffprobe := testenv.Getenv(t, "FFPROBE_PATH")
	out, err := exec.Command(ffprobe, "-v", "error", "-select_streams", "a:0",
		"-show_entries", "stream=codec_name,duration,bit_rate:format=duration,bit_rate", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var res struct {
		Streams []struct {
			Codec    string `json:"codec_name"`
			Duration string `json:"duration"`
			BitRate  string `json:"bit_rate"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
			BitRate  string `json:"bit_rate"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Streams) == 0 {
		t.Fatalf("%s has no audio stream", path)
	}
	// A number ffprobe printed; 0 if it printed none ("N/A").
	parseFloat := func(s string) float64 { f, _ := strconv.ParseFloat(s, 64); return f }
	ai := audioInfo{Codec: res.Streams[0].Codec, Duration: parseFloat(res.Streams[0].Duration),
		BitRate: int(parseFloat(res.Streams[0].BitRate))}
	if ai.Duration == 0 {
		ai.Duration = parseFloat(res.Format.Duration)
	}
	if ai.BitRate == 0 {
		ai.BitRate = int(parseFloat(res.Format.BitRate))
	}
	return ai
}

// harness is a converter's world for one test: private databases
// ("videos" and "mp3s" stand-ins), private queues, a broker connection.
type harness struct {
	t                testing.TB
	videosDB, mp3sDB *mongo.Database
	videos, mp3s     *gridfs.Bucket
	jobs             *jobs.Store
	url              string
	videoQ, mp3Q     string
	conn             *mq.Conn
	amqp             *amqp.Connection
	log              *slog.Logger
	reg              *prometheus.Registry
	metrics          *Metrics
	scratch          string
	ffmpeg, ffprobe  string
	mu               sync.Mutex
	consumed         []message.Conversion // mp3 messages read so far
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, url: testenv.RabbitMQ(t), ffmpeg: testenv.Getenv(t, "FFMPEG_PATH"),
		ffprobe: testenv.Getenv(t, "FFPROBE_PATH"), scratch: t.TempDir()}
	h.log = testLogger(t)
	h.videosDB, h.mp3sDB = testenv.Mongo(t), testenv.Mongo(t)
	var err error
	if h.videos, err = gridfs.NewBucket(h.videosDB); err != nil {
		t.Fatal(err)
	}
	if h.mp3s, err = gridfs.NewBucket(h.mp3sDB); err != nil {
		t.Fatal(err)
	}
	if h.jobs, err = jobs.NewStore(h.videosDB); err != nil {
		t.Fatal(err)
	}
	h.videoQ, h.mp3Q = testenv.Queue(t, h.url, "cvvideo"), testenv.Queue(t, h.url, "cvmp3")
	if h.conn, err = mq.New(h.url, h.log, mq.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.conn.Close() })
	testenv.Connected(t, h.conn)
	if h.amqp, err = amqp.Dial(h.url); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.amqp.Close() })
	ch, err := h.amqp.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	for _, q := range []string{h.videoQ, mq.DeadLetterQueue(h.videoQ), h.mp3Q} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	h.reg = prometheus.NewRegistry()
	if h.metrics, err = NewMetrics(h.reg); err != nil {
		t.Fatal(err)
	}
	return h
}

// options are the test defaults: short backoffs and timeouts.
func (h *harness) options() Options {
	return Options{
		VideoQueue: h.videoQ, MP3Queue: h.mp3Q,
		FFmpegPath: h.ffmpeg, FFprobePath: h.ffprobe,
		Bitrate: "128k", BitrateBPS: 128000,
		Consume: mq.ConsumeOptions{Concurrency: 2, MaxAttempts: 3,
			RetryBackoff: 100 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
			ShutdownTimeout: 10 * time.Second},
		ScratchDir: h.scratch, StreamFaststart: true, SeekableInput: true,
		MaxDuration: time.Hour, MaxInputBytes: 1 << 30,
		ProbeTimeout: 30 * time.Second, JobTimeout: 2 * time.Minute,
		ProgressInterval: 200 * time.Millisecond,
	}
}

func (h *harness) deps() Deps {
	return Deps{Videos: h.videos, MP3s: h.mp3s, Jobs: h.jobs, Publisher: h.conn, Log: h.log, Metrics: h.metrics}
}

// start runs a converter until the returned func is called (which waits
// for it to stop); the test's cleanup stops it too.
func (h *harness) start(d Deps, opt Options) (stop func()) {
	h.t.Helper()
	svc, err := New(d, opt)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, h.conn) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("converter stopped with %v", err)
			}
		})
	}
	h.t.Cleanup(stop)
	return stop
}

// submit does what the gateway does on an upload: store the video, create
// the job, publish the message. It returns the video_fid.
func (h *harness) submit(r io.Reader, filename, user string) string {
	h.t.Helper()
	ctx := context.Background()
	info, err := h.videos.Upload(ctx, filename, r, bson.M{"owner": user, "filename": filename, "content_type": "video/mp4"},
		gridfs.UploadOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	fid := info.ID.Hex()
	if err := h.jobs.Create(ctx, jobs.Job{ID: fid, Username: user, Filename: filename, VideoFID: fid}); err != nil {
		h.t.Fatal(err)
	}
	h.publish(message.Conversion{VideoFID: fid, Username: user, Filename: filename}.Encode())
	return fid
}

func (h *harness) submitFile(path, filename, user string) string {
	h.t.Helper()
	f, err := os.Open(path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	return h.submit(f, filename, user)
}

func (h *harness) publish(body []byte) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.conn.Publish(ctx, h.videoQ, mq.Message{Body: body}); err != nil {
		h.t.Fatal(err)
	}
}

// waitJob waits for the job to reach one of the final states.
func (h *harness) waitJob(fid string, timeout time.Duration) jobs.Job {
	h.t.Helper()
	var j jobs.Job
	if !testenv.Poll(timeout, func() bool {
		var err error
		if j, err = h.jobs.Get(context.Background(), fid); err != nil {
			h.t.Fatal(err)
		}
		return j.Status == jobs.Done || j.Status == jobs.Failed
	}) {
		h.t.Fatalf("job %s still %s after %s", fid, j.Status, timeout)
	}
	return j
}

// mp3Message returns the next message on the mp3 queue for fid, waiting up
// to timeout; messages for other fids are kept for later calls.
func (h *harness) mp3Message(fid string, timeout time.Duration) message.Conversion {
	h.t.Helper()
	var m message.Conversion
	if !testenv.Poll(timeout, func() bool {
		var ok bool
		m, ok = h.mp3MessageNow(fid)
		return ok
	}) {
		h.t.Fatalf("no message for %s on %s within %s", fid, h.mp3Q, timeout)
	}
	return m
}

// mp3MessageNow takes the next message for fid that is on the mp3 queue
// now (or was read from it earlier), without waiting: ok is false if there
// is none. A test that expects none calls it once every handling that
// could have published one has ended (its conversions_total result
// counted, or its converter stopped): a converter's publish is confirmed
// by the broker before its handling ends, so the message is on the queue
// by then.
func (h *harness) mp3MessageNow(fid string) (m message.Conversion, ok bool) {
	h.t.Helper()
	if m, ok = h.takeConsumed(fid); !ok {
		h.drainMP3Queue()
		m, ok = h.takeConsumed(fid)
	}
	return m, ok
}

// takeConsumed removes and returns the first message for fid already read
// from the mp3 queue.
func (h *harness) takeConsumed(fid string) (message.Conversion, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, m := range h.consumed {
		if m.VideoFID == fid {
			h.consumed = append(h.consumed[:i], h.consumed[i+1:]...)
			return m, true
		}
	}
	return message.Conversion{}, false
}

// drainMP3Queue moves the messages waiting on the mp3 queue into consumed.
func (h *harness) drainMP3Queue() {
	h.t.Helper()
	for _, d := range testenv.Drain(h.t, h.url, h.mp3Q) {
		var m message.Conversion
		if err := json.Unmarshal(d.Body, &m); err != nil {
			h.t.Fatalf("mp3 message %q: %v", d.Body, err)
		}
		if d.MessageId != m.VideoFID {
			h.t.Errorf("mp3 message id %q, want the video fid %q", d.MessageId, m.VideoFID)
		}
		h.mu.Lock()
		h.consumed = append(h.consumed, m)
		h.mu.Unlock()
	}
}

// queueDepth is the number of ready messages in q.
func (h *harness) queueDepth(q string) int {
	h.t.Helper()
	n, ok := testenv.QueueDepth(h.t, h.url, q)
	if !ok {
		h.t.Fatalf("queue %s does not exist", q)
	}
	return n
}

// result is the conversions_total counter for result.
func (h *harness) result(result string) int {
	h.t.Helper()
	return int(testenv.Metric(h.t, h.reg, "conversions_total", map[string]string{"result": result}))
}

// waitResult waits until conversions_total{result} reaches n.
func (h *harness) waitResult(result string, n int, timeout time.Duration) {
	h.t.Helper()
	if !testenv.Poll(timeout, func() bool { return h.result(result) >= n }) {
		h.t.Fatalf("conversions_total{result=%q} = %d after %s, want %d", result, h.result(result), timeout, n)
	}
}

// waitIdle waits until no handling is in flight (conversions_in_flight is
// 0): every handling begun so far has ended, its result counted. A caller
// knows that the handlings it cares about have begun.
func (h *harness) waitIdle() {
	h.t.Helper()
	testenv.Eventually(h.t, time.Minute, "no conversion in flight", func() bool {
		return testenv.Metric(h.t, h.reg, "conversions_in_flight", nil) == 0
	})
}

// converts submits clip (a name for media) as user's filename, waits for
// its job to be done and checks its MP3, named as filename with .mp3; it
// returns the video's fid.
func (h *harness) converts(clip, filename string) string {
	h.t.Helper()
	fid := h.submitFile(media(h.t, clip), filename, user)
	if j := h.waitJob(fid, time.Minute); j.Status != jobs.Done {
		h.t.Fatalf("%s: job %+v, want done", filename, j)
	}
	h.checkMP3(fid, media(h.t, clip), strings.TrimSuffix(filename, filepath.Ext(filename))+".mp3", user)
	return fid
}

// checkMP3 asserts that fid has exactly one MP3, stored under the video's
// ID with the expected metadata, whose audio ffprobe reads as MP3 of the
// source's duration; it returns what ffprobe saw.
func (h *harness) checkMP3(fid, source, wantName, wantOwner string) audioInfo {
	h.t.Helper()
	ctx := context.Background()
	id, err := bson.ObjectIDFromHex(fid)
	if err != nil {
		h.t.Fatal(err)
	}
	files, err := h.mp3s.Find(ctx, bson.M{"$or": bson.A{bson.M{"_id": id}, bson.M{"metadata.video_fid": fid}}})
	if err != nil {
		h.t.Fatal(err)
	}
	if len(files) != 1 {
		h.t.Fatalf("%d MP3 files for video %s, want exactly 1", len(files), fid)
	}
	info := files[0]
	if info.Name != wantName {
		h.t.Errorf("MP3 filename %q, want %q", info.Name, wantName)
	}
	var meta mp3Meta
	if err := bson.Unmarshal(info.Metadata, &meta); err != nil {
		h.t.Fatal(err)
	}
	if meta.Owner != wantOwner || meta.VideoFID != fid || meta.Filename != wantName || meta.Duration <= 0 || meta.Bitrate <= 0 {
		h.t.Errorf("MP3 metadata %+v: want owner %q, video_fid %s, filename %q, a duration and a bitrate", meta, wantOwner, fid, wantName)
	}
	nChunks, err := h.mp3sDB.Collection("fs.chunks").CountDocuments(ctx, bson.M{"files_id": id})
	if err != nil {
		h.t.Fatal(err)
	}
	if want := (info.Length + int64(info.ChunkSize) - 1) / int64(info.ChunkSize); nChunks != want {
		h.t.Errorf("%d chunks for the MP3, want %d", nChunks, want)
	}

	r, _, err := h.mp3s.Open(ctx, id, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	defer r.Close()
	path := filepath.Join(h.t.TempDir(), "out.mp3")
	f, err := os.Create(path)
	if err != nil {
		h.t.Fatal(err)
	}
	if _, err := io.Copy(f, r); err != nil {
		h.t.Fatal(err)
	}
	f.Close()
	got := probeAudio(h.t, path)
	src := probeAudio(h.t, source)
	if got.Codec != "mp3" {
		h.t.Errorf("MP3 codec %q, want mp3", got.Codec)
	}
	if math.Abs(got.Duration-src.Duration) > 0.5 {
		h.t.Errorf("MP3 lasts %.3f s, the source's audio %.3f s", got.Duration, src.Duration)
	}
	if math.Abs(meta.Duration-src.Duration) > 0.5 {
		h.t.Errorf("MP3 metadata duration %.3f s, the source's audio %.3f s", meta.Duration, src.Duration)
	}
	return got
}

// countMP3s is the number of MP3 files and chunks stored for fid.
func (h *harness) countMP3s(fid string) (files, chunks int64) {
	h.t.Helper()
	id, _ := bson.ObjectIDFromHex(fid)
	ctx := context.Background()
	files, err := h.mp3sDB.Collection("fs.files").CountDocuments(ctx, bson.M{"_id": id})
	if err != nil {
		h.t.Fatal(err)
	}
	chunks, err = h.mp3sDB.Collection("fs.chunks").CountDocuments(ctx, bson.M{"files_id": id})
	if err != nil {
		h.t.Fatal(err)
	}
	return files, chunks
}

// checkFailed asserts the user was told about a permanent failure: the job
// failed with a reason containing want, a failure message on the mp3 queue,
// no MP3, and the message neither retried nor dead-lettered.
func (h *harness) checkFailed(fid, want string) {
	h.t.Helper()
	j := h.waitJob(fid, 30*time.Second)
	if j.Status != jobs.Failed || !strings.Contains(j.Error, want) {
		h.t.Errorf("job %s: status %s, error %q; want failed with %q", fid, j.Status, j.Error, want)
	}
	m := h.mp3Message(fid, 10*time.Second)
	if m.MP3FID != nil || !strings.Contains(m.Error, want) || m.Username == "" {
		h.t.Errorf("failure message %+v: want mp3_fid null, a username and an error with %q", m, want)
	}
	if files, chunks := h.countMP3s(fid); files != 0 || chunks != 0 {
		h.t.Errorf("%d MP3 files and %d chunks for a failed conversion", files, chunks)
	}
	if n := h.queueDepth(mq.DeadLetterQueue(h.videoQ)); n != 0 {
		h.t.Errorf("%d dead-lettered messages, want 0", n)
	}
}

// testLogger logs through t until the test ends (and drops lines logged by
// goroutines still running after that).
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close) // registered first: runs last
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu     sync.Mutex
	t      testing.TB
	closed bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
}

// slowFFmpeg is an ffmpeg wrapper that reads its input in real time (-re),
// so that a conversion of a clip takes the clip's length.
func slowFFmpeg(t *testing.T, ffmpeg string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "slow-ffmpeg")
	script := "#!/bin/sh\nexec " + ffmpeg + " -re \"$@\"\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// ffmpegRunning reports whether an ffmpeg process has arg in its command line.
func ffmpegRunning(t *testing.T, arg string) bool {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc")
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		parts := bytes.Split(b, []byte{0})
		if len(parts) == 0 || !strings.Contains(string(parts[0]), "ffmpeg") {
			continue
		}
		if bytes.Contains(b, []byte(arg)) {
			return true
		}
	}
	return false
}

// recordingJobs wraps a job store and records the progress values set.
type recordingJobs struct {
	jobStore
	mu       sync.Mutex
	progress []int
}

func (r *recordingJobs) Progress(ctx context.Context, id string, pct int) error {
	r.mu.Lock()
	r.progress = append(r.progress, pct)
	r.mu.Unlock()
	return r.jobStore.Progress(ctx, id, pct)
}

func (r *recordingJobs) values() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.progress...)
}

var errTest = errors.New("test error")

// slowProgressJobs wraps a job store whose progress writes take delay, like
// a busy database. A write whose caller gives up (context cancelled) goes
// on in the background, as it does on a server, and is counted.
type slowProgressJobs struct {
	jobStore
	delay     time.Duration
	abandoned atomic.Int32
	inflight  sync.WaitGroup
}

func (r *slowProgressJobs) Progress(ctx context.Context, id string, pct int) error {
	done := make(chan error, 1)
	r.inflight.Add(1)
	go func() {
		defer r.inflight.Done()
		time.Sleep(r.delay) // scenario, not evidence: the slow database under test
		done <- r.jobStore.Progress(context.WithoutCancel(ctx), id, pct)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		r.abandoned.Add(1)
		return ctx.Err()
	}
}
