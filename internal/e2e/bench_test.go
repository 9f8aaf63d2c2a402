package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/testenv"
)

// benchConcurrency is C, the conversions at once: the converter's
// CONCURRENCY and the bare ffmpeg baseline's parallelism. Two matches the
// two cores of the machine the benchmarks were written on.
const benchConcurrency = 2

// BenchmarkPipelineClips measures the suite's throughput on 40 distinct
// 10-second clips (640x360 H.264 with AAC at a different pitch each, MP4
// with its index at the end): the time from the first POST /upload until
// the 40th "MP3 ready" email is in Mailpit, with the four binaries running
// and the converter at CONCURRENCY=2. The baseline, measured in the same
// iteration while the suite is idle, is bare
// `ffmpeg -i clip.mp4 -vn -c:a libmp3lame -b:a 128k out.mp3` on local
// copies of the 40 clips, two at a time. The clips are generated once per
// run (two at a time, about half a minute).
//
// Reported: pipeline_s, bare_ffmpeg_s and throughput_ratio =
// bare_ffmpeg_s / pipeline_s (issue 15's goal: ≥ 0.8). The log has the
// mean of each phase of the converter's "conversion done" lines.
//
//	source .run/env && MP3_STACK=1 go test -run '^$' -bench Pipeline -benchtime=1x -timeout 60m -v ./internal/e2e/
func BenchmarkPipelineClips(b *testing.B) {
	benchNeedsStack(b)
	testenv.LogStorage(b)
	const clips = 40
	ffmpeg := testenv.Getenv(b, "FFMPEG_PATH")
	files := benchClips(b, ffmpeg, clips)
	// USER_MAX_ACTIVE=0: one user has all 40 conversions queued at once.
	s := startBenchSuite(b, map[string]string{
		"CONCURRENCY": strconv.Itoa(benchConcurrency), "USER_MAX_ACTIVE": "0",
	})
	out := b.TempDir()

	var sumPipeline, sumBare time.Duration
	n := 0
	var email, tok string
	var fids []string
	for b.Loop() {
		t0 := time.Now()
		err := parallel(len(files), benchConcurrency, func(i int) error {
			return bareFFmpeg(ffmpeg, files[i], filepath.Join(out, fmt.Sprintf("clip-%02d.mp3", i)))
		})
		sumBare += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}

		// A fresh user per iteration: Mailpit lists at most 100 messages
		// per search, and this user's 40 are all there is to wait for.
		email, tok = benchUser(b, s, "bench_clips")
		fids = make([]string, len(files))
		// The uploads go C at a time, as the baseline converts: a client
		// that sent all 40 at once would have the gateway parse 40 bodies
		// on the two cores the first conversions need.
		t0, cpu0 := time.Now(), readCPU()
		err = parallel(len(files), benchConcurrency, func(i int) error {
			fid, err := s.uploadFile(context.Background(), tok, files[i])
			fids[i] = fid
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		took := s.waitReadyMails(b, email, fids, 20*time.Minute).Sub(t0)
		sumPipeline += took
		n++
		by, all := cpuSince(cpu0, s.benchPIDs())
		b.Logf("CPU seconds during the pipeline: %.2f of the %.2f its %.2fs on %d cores had; by process: %s",
			all, took.Seconds()*float64(runtime.NumCPU()), took.Seconds(), runtime.NumCPU(), by)
	}
	// The iteration's time is baseline and pipeline together: meaningless,
	// so it is left out (a zero ns/op is not printed).
	b.ReportMetric(0, "ns/op")
	pipeline, bare := sumPipeline.Seconds()/float64(n), sumBare.Seconds()/float64(n)
	b.ReportMetric(pipeline, "pipeline_s")
	b.ReportMetric(bare, "bare_ffmpeg_s")
	b.ReportMetric(bare/pipeline, "throughput_ratio")
	b.Logf("%d clips of %d s, %d at a time: pipeline (upload → 40th email) %.2fs, bare ffmpeg %.2fs: throughput ratio %.3f",
		clips, benchClipSeconds, benchConcurrency, pipeline, bare, bare/pipeline)
	b.Logf("converter, mean per job: %s", meanPhases(conversionDone(s.converter.Output())))
	s.checkBenchMP3(b, tok, fids[len(fids)-1], benchClipSeconds)
}

// BenchmarkPipelineLargeFile measures one user's large upload: a 5-minute
// 1280x720 H.264/AAC MP4 of about 290 MB (287MB), and the same at 58
// Mbit/s, about 2.18 GB (2GiB), with its index at the end
// (ffmpeg's default, so the converter needs a seekable input), from the
// start of POST /upload until the "MP3 ready" email is in Mailpit
// (upload_to_email_s), and from the upload's 200 until that email
// (after_upload_s, the conversion's part). The baselines, measured in the
// same iteration before the upload while the suite is idle: raw_read_s, one
// single-cursor read of the same bytes from the same FerretDB with
// internal/gridfs (Open at 0, io.Copy to io.Discard), and bare_ffmpeg_s,
// `ffmpeg -i video.mp4 -vn -c:a libmp3lame -b:a 128k out.mp3` on the local
// copy.
//
// Reported besides: vs_max = after_upload_s / max(raw_read_s,
// bare_ffmpeg_s) and upload_to_email_vs_max = upload_to_email_s / that
// max (issue 15's goal for the whole upload → email: ≤ 1.2), and
// converter_peak_rss_MiB, the converter process's peak resident memory
// (VmHWM, without its ffmpeg and ffprobe children; goal < 100 MiB). The
// log has the converter's "conversion done" line with its phases.
//
// The video is generated once (a minute or two) and kept in the user's
// cache directory (mp3converter-bench) for later runs:
//
//	source .run/env && MP3_STACK=1 go test -run '^$' -bench Pipeline -benchtime=1x -timeout 60m -v ./internal/e2e/
func BenchmarkPipelineLargeFile(b *testing.B) {
	benchNeedsStack(b)
	testenv.LogStorage(b)
	b.Run("287MB", func(b *testing.B) { benchLargeFile(b, benchLargeVideo(b), nil) })
	// Issue 15's memory bound holds for a 2 GiB file too: the converter
	// holds a bounded cache of chunks, never the file.
	b.Run("2GiB", func(b *testing.B) {
		benchLargeFile(b, benchHugeVideo(b), map[string]string{"MAX_UPLOAD_BYTES": strconv.Itoa(3 << 30)})
	})
}

// benchLargeFile is BenchmarkPipelineLargeFile on video, with env for the
// suite.
func benchLargeFile(b *testing.B, video string, env map[string]string) {
	ffmpeg := testenv.Getenv(b, "FFMPEG_PATH")
	st, err := os.Stat(video)
	if err != nil {
		b.Fatal(err)
	}
	s := startBenchSuite(b, mergeEnv(map[string]string{"CONCURRENCY": strconv.Itoa(benchConcurrency)}, env))
	// The raw read's copy lives in a database of its own on the same
	// FerretDB: the suite's video is converted (and deleted) as soon as it
	// is stored, and reading it meanwhile would slow both reads down.
	scratch, err := gridfs.NewBucket(testenv.Mongo(b))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	localMP3 := filepath.Join(b.TempDir(), "out.mp3")

	var sumRead, sumWrite, sumBare, sumWhole, sumAfter time.Duration
	n := 0
	var tok, fid string
	for b.Loop() {
		t0 := time.Now()
		info := uploadCopy(b, scratch, video)
		sumWrite += time.Since(t0)
		t0 = time.Now()
		r, _, err := scratch.Open(ctx, info.ID, 0)
		if err != nil {
			b.Fatal(err)
		}
		read, err := io.Copy(io.Discard, r)
		r.Close()
		sumRead += time.Since(t0)
		if err != nil || read != st.Size() {
			b.Fatalf("raw read: %d of %d bytes: %v", read, st.Size(), err)
		}
		if err := scratch.Delete(ctx, info.ID); err != nil {
			b.Fatal(err)
		}

		t0 = time.Now()
		if err := bareFFmpeg(ffmpeg, video, localMP3); err != nil {
			b.Fatal(err)
		}
		sumBare += time.Since(t0)

		var email string
		email, tok = benchUser(b, s, "bench_large")
		t0 = time.Now()
		fid, err = s.uploadFile(ctx, tok, video)
		t1, cpu1 := time.Now(), readCPU()
		if err != nil {
			b.Fatal(err)
		}
		at := s.waitReadyMails(b, email, []string{fid}, 30*time.Minute)
		sumWhole += at.Sub(t0)
		sumAfter += at.Sub(t1)
		n++
		by, all := cpuSince(cpu1, s.benchPIDs())
		b.Logf("CPU seconds from the upload's 200 to the email: %.2f in %.2fs; by process: %s", all, at.Sub(t1).Seconds(), by)
	}
	_, peak := s.converter.RSS()
	b.ReportMetric(0, "ns/op") // baselines and pipeline together: meaningless
	per := func(d time.Duration) float64 { return d.Seconds() / float64(n) }
	whole, after, raw, bare := per(sumWhole), per(sumAfter), per(sumRead), per(sumBare)
	bound := max(raw, bare)
	b.ReportMetric(whole, "upload_to_email_s")
	b.ReportMetric(after, "after_upload_s")
	b.ReportMetric(raw, "raw_read_s")
	b.ReportMetric(bare, "bare_ffmpeg_s")
	b.ReportMetric(after/bound, "vs_max")
	b.ReportMetric(whole/bound, "upload_to_email_vs_max")
	b.ReportMetric(float64(peak)/(1<<20), "converter_peak_rss_MiB")
	b.Logf("%s (%.1f MB): upload → email %.2fs (upload %.2fs, then %.2fs to the email); raw read %.2fs (raw write %.2fs), bare ffmpeg %.2fs: vs max %.3f, upload → email vs max %.3f; converter peak RSS %.1f MiB",
		filepath.Base(video), float64(st.Size())/1e6, whole, whole-after, after, raw, per(sumWrite), bare,
		after/bound, whole/bound, float64(peak)/(1<<20))
	for _, l := range conversionDone(s.converter.Output()) {
		b.Logf("converter: %s", l)
	}
	s.checkBenchMP3(b, tok, fid, 300)
}

// benchNeedsStack skips a benchmark outside `make bench` and the like: the
// benchmarks start the four binaries against the local stack.
func benchNeedsStack(b *testing.B) {
	b.Helper()
	if os.Getenv("MP3_STACK") == "" {
		b.Skip("end-to-end benchmark: needs the local stack (source .run/env && MP3_STACK=1 go test -bench ...)")
	}
}

// startBenchSuite starts the four binaries as startSuiteWith does, with
// env overriding the suite's, except that they reach RabbitMQ, FerretDB
// and Mailpit directly: the fault tests' proxies copy every byte through
// this process, which would take CPU from what is measured. startSuiteWith
// also takes a *testing.T, which a benchmark does not have.
func startBenchSuite(b *testing.B, env map[string]string) *suite {
	b.Helper()
	db := testenv.MySQL(b)
	amqpURL := testenv.RabbitMQ(b)
	s := &suite{
		amqpURL:    amqpURL,
		videoQueue: testenv.Queue(b, amqpURL, "benchvideo"),
		mp3Queue:   testenv.Queue(b, amqpURL, "benchmp3"),
		mail:       testenv.MailpitShared(b),
		videosDB:   testenv.Mongo(b),
		mp3sDB:     testenv.Mongo(b),
		authBin:    testenv.Binary(b, "auth"),
	}
	authPort, gwPort := testenv.FreePort(b), testenv.FreePort(b)
	s.env = map[string]string{
		"MYSQL_HOST": db.Host, "MYSQL_PORT": strconv.Itoa(db.Port), "MYSQL_USER": db.User,
		"MYSQL_PASSWORD": db.Password, "MYSQL_DB": db.Name, "JWT_SECRET": "e2e-secret",
		"AUTH_SVC_ADDRESS": fmt.Sprintf("127.0.0.1:%d", authPort),
		"MONGODB_URI":      testenv.Getenv(b, "MONGODB_URI"), "RABBITMQ_URL": amqpURL,
		"MONGODB_VIDEOS_DB": s.videosDB.Name(), "MONGODB_MP3S_DB": s.mp3sDB.Name(),
		"VIDEO_QUEUE": s.videoQueue, "MP3_QUEUE": s.mp3Queue,
		"FFMPEG_PATH": testenv.Getenv(b, "FFMPEG_PATH"), "FFPROBE_PATH": testenv.Getenv(b, "FFPROBE_PATH"),
		"SMTP_HOST": s.mail.SMTPHost, "SMTP_PORT": strconv.Itoa(s.mail.SMTPPort), "SMTP_TLS": "none",
		"MAIL_FROM": "mp3converter@example.com", "PUBLIC_URL": fmt.Sprintf("http://127.0.0.1:%d", gwPort),
		"SCRATCH_DIR": b.TempDir(), "SHUTDOWN_TIMEOUT": "5s", "DOWNLOAD_LINK_KEY": e2eLinkKey,
	}
	maps.Copy(s.env, env)
	testenv.MigrateAuth(b, s.env)
	s.auth = testenv.Start(b, "auth", s.authBin, authPort, s.env)
	s.gateway = testenv.Start(b, "gateway", testenv.Binary(b, "gateway"), gwPort, s.env)
	s.converter = testenv.Start(b, "converter", testenv.Binary(b, "converter"), testenv.FreePort(b), s.env)
	s.notification = testenv.Start(b, "notification", testenv.Binary(b, "notification"), testenv.FreePort(b), s.env)
	s.converters, s.notifications = []*testenv.Proc{s.converter}, []*testenv.Proc{s.notification}
	return s
}

// benchUser adds a user with a fresh address and logs in.
func benchUser(b *testing.B, s *suite, prefix string) (email, tok string) {
	b.Helper()
	email = testenv.MailAddress(prefix)
	if err := s.tryAddUser(email, "pw"); err != nil {
		b.Fatal(err)
	}
	status, tok, err := s.tryLogin(email, "pw")
	if err != nil || status != http.StatusOK {
		b.Fatalf("login: %d %q: %v", status, tok, err)
	}
	return email, tok
}

// uploadClient has no overall timeout: a large upload on a loaded machine
// may take minutes; each request is bounded by its context instead.
var uploadClient = &http.Client{}

// uploadFile posts the file as `curl -F file=@path` does (streamed from
// disk, with a Content-Length) and returns the video's id once the gateway
// answered 200 "success!".
func (s *suite) uploadFile(ctx context.Context, tok, file string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	// The multipart part's header, then the file, then the closing
	// boundary: what the writer would write around the file's bytes.
	var frame bytes.Buffer
	mw := multipart.NewWriter(&frame)
	if _, err := mw.CreateFormFile("file", filepath.Base(file)); err != nil {
		return "", err
	}
	headLen := frame.Len()
	mw.Close()
	head, tail := frame.Bytes()[:headLen], frame.Bytes()[headLen:]
	body := io.MultiReader(bytes.NewReader(head), f, bytes.NewReader(tail))
	req, err := http.NewRequestWithContext(ctx, "POST", s.gateway.URL()+"/upload", body)
	if err != nil {
		return "", err
	}
	req.ContentLength = int64(len(head)) + st.Size() + int64(len(tail))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := uploadClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("upload %s: %w", filepath.Base(file), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(b) != "success!" {
		return "", fmt.Errorf("upload %s: %d %q: %v", filepath.Base(file), resp.StatusCode, b, err)
	}
	return path.Base(resp.Header.Get("Location")), nil
}

// waitReadyMails waits until an "MP3 ready" email of each fid has reached
// addr and returns when the last of them arrived (Mailpit's own receipt
// time, on this machine's clock): polling every 250 ms, so that the
// polling's searches take little CPU from what is measured, without the
// polling's delay in the figure. A failure email for one of them fails
// the benchmark at once.
func (s *suite) waitReadyMails(b *testing.B, addr string, fids []string, timeout time.Duration) time.Time {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ready := map[string]time.Time{}
		for _, m := range s.mail.To(b, addr) {
			if fid, ok := mp3FIDOfMessageID(m.MessageID); ok {
				ready[fid] = m.Created
			} else {
				b.Fatalf("unexpected email to %s: %q (%s)", addr, m.Subject, m.MessageID)
			}
		}
		var last time.Time
		all := true
		for _, f := range fids {
			at, ok := ready[f]
			all = all && ok
			if at.After(last) {
				last = at
			}
		}
		if all {
			return last
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d MP3-ready emails reached %s within %s", len(ready), len(fids), addr, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkBenchMP3 is checkMP3 for a benchmark: it downloads the MP3 fid
// and checks with ffprobe that it is an MP3 that lasts the video's
// seconds, so that what was timed was a real conversion.
func (s *suite) checkBenchMP3(b *testing.B, tok, fid string, seconds float64) {
	b.Helper()
	status, mp3, err := s.tryGet(tok, "/download?fid="+fid)
	if err != nil || status != http.StatusOK {
		b.Fatalf("download %s: %d: %v", fid, status, err)
	}
	p := filepath.Join(b.TempDir(), fid+".mp3")
	if err := os.WriteFile(p, mp3, 0o600); err != nil {
		b.Fatal(err)
	}
	probe := testenv.FFprobe(b, p)
	if got := probe.Seconds(); probe.Format.FormatName != "mp3" || got < seconds-0.5 || got > seconds+0.5 {
		b.Fatalf("MP3 %s: format %q, %.2f s; want mp3 of %.0f ± 0.5 s", fid, probe.Format.FormatName, got, seconds)
	}
}

// uploadCopy stores the video in bucket as the gateway stores an upload
// (default chunk size).
func uploadCopy(b *testing.B, bucket *gridfs.Bucket, video string) gridfs.FileInfo {
	b.Helper()
	f, err := os.Open(video)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	info, err := bucket.Upload(context.Background(), filepath.Base(video), f, nil, gridfs.UploadOptions{})
	if err != nil {
		b.Fatalf("store the raw read's copy: %v", err)
	}
	return info
}

// bareFFmpeg converts in to out as the baselines do.
func bareFFmpeg(ffmpeg, in, out string) error {
	if b, err := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-y", "-i", in,
		"-vn", "-c:a", "libmp3lame", "-b:a", "128k", out).CombinedOutput(); err != nil {
		return fmt.Errorf("bare ffmpeg on %s: %v: %s", filepath.Base(in), err, b)
	}
	return nil
}

// parallel calls f(0) … f(n-1), c at a time, and returns their errors
// joined.
func parallel(n, c int, f func(i int) error) error {
	sem := make(chan struct{}, c)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = f(i)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// benchClipSeconds is the length of each of BenchmarkPipelineClips' clips.
const benchClipSeconds = 10

// benchClips generates n distinct clips of benchClipSeconds (their tones
// differ), two at a time, in a directory of the benchmark's.
func benchClips(b *testing.B, ffmpeg string, n int) []string {
	b.Helper()
	dir := b.TempDir()
	files := make([]string, n)
	d := strconv.Itoa(benchClipSeconds)
	t0 := time.Now()
	err := parallel(n, 2, func(i int) error {
		files[i] = filepath.Join(dir, fmt.Sprintf("clip-%02d.mp4", i))
		out, err := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-y",
			"-f", "lavfi", "-i", "testsrc=size=640x360:rate=25:duration="+d,
			"-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=44100:duration=%s", 220+20*i, d),
			"-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
			"-c:a", "aac", "-b:a", "128k", "-ac", "2", files[i]).CombinedOutput()
		if err != nil {
			return fmt.Errorf("generate clip %d: %v: %s", i, err, out)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var size int64
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			size += st.Size()
		}
	}
	b.Logf("generated %d clips (%.1f MB in all) in %s", n, float64(size)/1e6, time.Since(t0).Round(time.Second))
	return files
}

// benchLargeVideo returns BenchmarkPipelineLargeFile's video, generating it
// on first use: 5 minutes of 1280x720 at 25 fps, a moving test pattern
// with per-frame noise so that x264 spends its whole 7500 kb/s (the bytes
// are no more compressible than a camera's), with a 440 Hz tone in AAC;
// the index at the end. It is kept between runs (testenv.CachedVideo),
// named after its parameters.
func benchLargeVideo(b *testing.B) string {
	b.Helper()
	return benchNoiseVideo(b, "pipeline-720p-5min-7500k-noise.mp4", "7500k")
}

// benchHugeVideo is benchLargeVideo at 58 Mbit/s: about 2.18 GB, a
// little over 2 GiB.
func benchHugeVideo(b *testing.B) string {
	b.Helper()
	return benchNoiseVideo(b, "pipeline-720p-5min-58000k-noise.mp4", "58000k")
}

// benchNoiseVideo is a 5-minute 1280x720 H.264/AAC MP4 with its index at
// the end, of the video bitrate given (noise keeps x264 at it).
func benchNoiseVideo(b *testing.B, name, bitrate string) string {
	rate, _ := strconv.Atoi(strings.TrimSuffix(bitrate, "k"))
	return testenv.CachedVideo(b, name,
		"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=300,noise=alls=20:allf=t+u",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=300",
		"-map", "0:v", "-map", "1:a",
		"-c:v", "libx264", "-preset", "ultrafast", "-b:v", bitrate, "-maxrate", bitrate, "-bufsize", strconv.Itoa(2*rate)+"k",
		"-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-ac", "2", "-f", "mp4")
}

// mergeEnv is a with b's entries over it.
func mergeEnv(a, b map[string]string) map[string]string {
	maps.Copy(a, b)
	return a
}

// conversionDone returns the converter's "conversion done" log lines
// (JSON), without their time and level.
func conversionDone(output string) []string {
	var lines []string
	for _, l := range strings.Split(output, "\n") {
		if !strings.Contains(l, `"conversion done"`) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			lines = append(lines, l)
			continue
		}
		delete(m, "time")
		delete(m, "level")
		b, _ := json.Marshal(m)
		lines = append(lines, string(b))
	}
	return lines
}

// meanPhases is the mean of each duration ("took", "probe", …) and number
// ("read_ratio") over "conversion done" lines, by name.
func meanPhases(lines []string) string {
	if len(lines) == 0 {
		return "no conversion done line"
	}
	sums := map[string]float64{}
	var keys []string
	for _, l := range lines {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) != nil {
			continue
		}
		for k, v := range m {
			var x float64
			switch v := v.(type) {
			case float64:
				x = v
			case string:
				d, err := time.ParseDuration(v)
				if err != nil {
					continue
				}
				x = d.Seconds()
			default:
				continue
			}
			if _, seen := sums[k]; !seen {
				keys = append(keys, k)
			}
			sums[k] += x
		}
	}
	slices.Sort(keys)
	var sb strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sb, "%s=%.3g ", k, sums[k]/float64(len(lines)))
	}
	return fmt.Sprintf("%s(%d jobs; durations in seconds)", sb.String(), len(lines))
}
