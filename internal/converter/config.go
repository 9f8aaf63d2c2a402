// Package converter is the converter service: a competing consumer of
// VIDEO_QUEUE that reads each video from GridFS "videos", converts its first
// audio stream to MP3 with ffmpeg, stores the MP3 in GridFS "mp3s", publishes
// the result on MP3_QUEUE and updates the job record, and only then acks.
//
// # Exactly one MP3 per video
//
// The MP3 is stored with the same ObjectID as its video, so mp3_fid always
// equals video_fid. A redelivered message (converter killed after the upload,
// ack lost) finds the MP3 already there and only finishes the bookkeeping
// (job done, mp3 message published) instead of converting again.
//
// Two converters never work on one video at once (a duplicate message, or
// one the broker handed to a second converter because the first kept it
// unacked past RabbitMQ's consumer_timeout). A converter first takes the
// video's lease (collection "leases" of the videos database, keyed by the
// video ID, for every video, the original gateway's too), renews it every
// third of JOB_LEASE_TTL while it works and releases it once the job's
// outcome is published and recorded. A second converter that finds the
// lease held defers its message (internal/mq's ErrDeferred: republished
// after a backoff, no attempt used up, nothing reported to the user) until
// the lease is free, then finds the MP3 made and the job done and only
// acks. A lease whose holder died expires JOB_LEASE_TTL after its last
// renewal, or is taken over at once when the holder was a process of the
// same machine and PID namespace that is gone. A converter that loses its
// lease (not renewed in time, taken over) stops, kills ffmpeg and defers
// its message too; so does one whose broker channel closes (the broker has
// requeued the message). Deferrals are bounded (twice the longest a lease
// can be held): beyond that they count as failed attempts.
//
// Underneath, the GridFS store refuses a second writer of one file ID
// while the first still writes it (gridfs.ErrConflict, also deferred), so
// that one writer's stray-chunk cleanup never removes another's chunks. A
// half-written MP3 is invisible (the GridFS files document is written
// last) and its stray chunks are removed by the next upload of that ID.
//
// # Streaming
//
// Neither the video nor the MP3 is ever held in memory. ffmpeg's MP3 on
// stdout is piped straight into the GridFS upload. The video goes to ffmpeg
// one of two ways:
//
//   - an MP4/MOV with its index (moov box) before the media data ("faststart")
//     is piped to ffmpeg's stdin while it downloads: download and conversion
//     overlap. The index, read first, is what ffprobe inspects (with
//     SEEKABLE_INPUT, the default, ffmpeg reads the stored file where it
//     needs to, and says itself what it opened: see transcode);
//   - anything else (an MP4 written without faststart, ffmpeg's default, needs
//     a seekable input; other containers are read from a file for safety) is
//     downloaded to a temporary file in SCRATCH_DIR, removed afterwards.
//     The temporary files of one process stay within SCRATCH_LIMIT_BYTES
//     together (the emptyDir's sizeLimit): a video larger than the limit
//     fails with a clear reason, one that does not fit beside the jobs in
//     flight waits for them (a few minutes at most, then it is retried).
//     Each file is locked while in use; at start the converter removes the
//     unlocked ones (left by a converter that was killed) that bear its
//     naming pattern, converter-<digits>.video, and nothing else.
//
// Only the audio is decoded (-vn -map 0:a:0). Audio that already is MP3 is
// copied as it is; anything else is encoded with LAME at a constant bitrate
// (MP3_BITRATE, default 128k CBR).
//
// # Inputs
//
// ffprobe and ffmpeg open only a file ("file:" path), a pipe or the
// loopback URL of a seekable input, with
// -protocol_whitelist, and only common media containers, with
// -format_whitelist (see package ffmpeg): never another URL, nor a demuxer that
// follows a playlist or script (HLS, DASH, concat, SDP/RTSP, image
// sequences, lavfi). Before that, the first bytes of the video are sniffed:
// an HLS or PLS playlist, a DASH manifest, an ffconcat script, an SDP
// description, an FFmpeg metadata file or any XML/HTML document fails for
// good with a reason that names it, and ffmpeg never runs on it.
//
// # Owner
//
// The MP3 belongs to the video's owner: the metadata.owner the gateway
// stores with the upload (which /download checks), copied into the MP3's
// metadata; the result on MP3_QUEUE (whose username notification emails)
// names that owner too. A message whose username differs is logged and
// overruled, so that whoever can publish to VIDEO_QUEUE cannot claim, or
// redirect the email of, somebody else's video. A video stored by the
// original gateway has no owner: the message's username is used, as the
// original converter did.
//
// # Failures
//
// A permanent failure (not a media file, no audio track, longer than
// MAX_DURATION, damaged or truncated, malformed message, unknown video) marks
// the job failed with a human-readable reason, publishes a message with an
// "error" field on MP3_QUEUE so the user is told, and acks. Anything else
// (MongoDB or the broker unavailable, ffmpeg killed by a shutdown) is
// retried by internal/mq with backoff; on the last of MAX_ATTEMPTS the job is
// marked failed and the user told, then the message is dead-lettered to
// "<VIDEO_QUEUE>.dead".
package converter

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/logging"
	"mp3converter/internal/mongodb"
	"mp3converter/internal/mq"
	"mp3converter/internal/retention"
)

// Config is the converter's configuration, from the environment:
//
//	PORT               8081          health and metrics port (/healthz, /readyz, /metrics); nothing else is served
//	LOG_LEVEL          info          debug, info, warn or error
//	MONGODB_URI        mongodb://mongodb:27017   videos in GridFS database "videos", MP3s in "mp3s", jobs in "videos"
//	MONGODB_VIDEOS_DB  videos        the original's database names, settable so several suites (or tests) share one server
//	MONGODB_MP3S_DB    mp3s
//	RABBITMQ_URL       amqp://guest:guest@rabbitmq:5672/
//	VIDEO_QUEUE        video         queue consumed (the original's name); dead letters go to VIDEO_QUEUE.dead
//	MP3_QUEUE          mp3           queue the results are published to (the original's name)
//	FFMPEG_PATH        ffmpeg        ffmpeg binary (looked up in PATH without a slash)
//	FFPROBE_PATH       ffprobe       ffprobe binary
//	MP3_BITRATE        128k          constant bitrate of the LAME encoder (CBR; 32k–320k); MP3 audio is copied as it is
//	CONCURRENCY        0             conversions at once in this process; 0 means one per CPU
//	PREFETCH           0             unacked messages the broker sends ahead; 0 means CONCURRENCY
//	MAX_ATTEMPTS       5             tries of a message with transient failures before it is dead-lettered
//	MAX_REDELIVERIES   10            times a message may come back unsettled (a converter died on it) before
//	                                 it is dead-lettered and its job failed
//	RETRY_BACKOFF      2s            delay before the first retry; doubles per attempt
//	MAX_RETRY_BACKOFF  1m            cap of the retry delay
//	SCRATCH_DIR        os.TempDir()  where videos that need a seekable input are downloaded (removed after each job;
//	                                 at start, those a killed converter left are removed)
//	SCRATCH_LIMIT_BYTES 0            bytes the temporary videos of this process may take in SCRATCH_DIR together
//	                                 (set it to the emptyDir's sizeLimit); 0: only the file system's free space.
//	                                 A video larger than the limit fails with a clear reason (a faststart MP4,
//	                                 streamed, needs none); one that does not fit beside the jobs in flight is retried
//	STREAM_FASTSTART   true          pipe faststart MP4/MOV to ffmpeg while downloading instead of using SCRATCH_DIR
//	MAX_DURATION       3h            longest audio converted; a longer input fails with a clear reason
//	MAX_INPUT_BYTES    4294967296    largest video accepted (4 GiB); larger fails with a clear reason
//	PROBE_TIMEOUT      1m            bound of one ffprobe run
//	JOB_TIMEOUT        25m           bound of one whole job; a job that outlasts it is retried. It must stay below
//	                                 RabbitMQ's consumer_timeout (BROKER_CONSUMER_TIMEOUT), see below
//	JOB_LEASE_TTL      2m            a conversion holds a lease on its video, renewed every third of this; a second
//	                                 converter handed the same video waits (its message is deferred, not failed)
//	                                 until the lease is released, or expires this long after its holder died (at
//	                                 once when the holder was a process on the same machine that is gone)
//	BROKER_CONSUMER_TIMEOUT 30m      RabbitMQ's consumer_timeout (its default; the manifests state it): how long
//	                                 the broker lets a delivery stay unacked before it closes the channel and
//	                                 hands the message to another consumer. The converter refuses to start when
//	                                 JOB_TIMEOUT + MAX_RETRY_BACKOFF + 2m (reporting, republishing) is not below
//	                                 it; 0 means the broker has no consumer timeout (no check)
//	SHUTDOWN_TIMEOUT   60s           on SIGTERM, how long conversions in flight may finish; then ffmpeg is
//	                                 killed and their messages requeued (keep it below the pod's
//	                                 terminationGracePeriodSeconds)
type Config struct {
	Port int `env:"PORT" envDefault:"8081"`
	logging.Config

	mongodb.StoreConfig
	mq.BrokerConfig
	VideoQueue string `env:"VIDEO_QUEUE" envDefault:"video"`
	MP3Queue   string `env:"MP3_QUEUE" envDefault:"mp3"`

	FFmpegPath  string `env:"FFMPEG_PATH" envDefault:"ffmpeg"`
	FFprobePath string `env:"FFPROBE_PATH" envDefault:"ffprobe"`
	MP3Bitrate  string `env:"MP3_BITRATE" envDefault:"128k"`

	Concurrency     int           `env:"CONCURRENCY" envDefault:"0"`
	Prefetch        int           `env:"PREFETCH" envDefault:"0"`
	MaxAttempts     int           `env:"MAX_ATTEMPTS" envDefault:"5"`
	MaxRedeliveries int           `env:"MAX_REDELIVERIES" envDefault:"10"`
	RetryBackoff    time.Duration `env:"RETRY_BACKOFF" envDefault:"2s"`
	MaxRetryBackoff time.Duration `env:"MAX_RETRY_BACKOFF" envDefault:"1m"`

	ScratchDir      string        `env:"SCRATCH_DIR"`
	ScratchLimit    int64         `env:"SCRATCH_LIMIT_BYTES" envDefault:"0"`
	StreamFaststart bool          `env:"STREAM_FASTSTART" envDefault:"true"`
	SeekableInput   bool          `env:"SEEKABLE_INPUT" envDefault:"true"`
	MaxDuration     time.Duration `env:"MAX_DURATION" envDefault:"3h"`
	MaxInputBytes   int64         `env:"MAX_INPUT_BYTES" envDefault:"4294967296"`
	ProbeTimeout    time.Duration `env:"PROBE_TIMEOUT" envDefault:"1m"`
	// JobTimeout's default stays below RabbitMQ's default consumer_timeout
	// (30 minutes since RabbitMQ 3.8.15), with room for the retry backoff
	// and the reports (see LongestUnacked): a delivery left unacked longer
	// than that is taken back by the broker, which closes the channel and
	// hands the message to another converter while the first one still
	// runs (the first is then cancelled, its work wasted). A conversion
	// within the defaults (3 h of audio, 4 GiB) takes a few minutes.
	JobTimeout            time.Duration `env:"JOB_TIMEOUT" envDefault:"25m"`
	LeaseTTL              time.Duration `env:"JOB_LEASE_TTL" envDefault:"2m"`
	BrokerConsumerTimeout time.Duration `env:"BROKER_CONSUMER_TIMEOUT" envDefault:"30m"`
	ShutdownTimeout       time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"60s"`

	// Retention: what the converter removes once it is no longer needed
	// (KEEP_VIDEOS, FAILED_VIDEO_GRACE, MP3_RETENTION, SWEEP_INTERVAL);
	// the converter runs the sweeper.
	Retention retention.Config
}

// settleMargin is the time a delivery may stay unacked beyond JOB_TIMEOUT
// and the retry backoff: reporting a failure (reportMargin) and publishing
// the retry copy (mq's 30 s PublishTimeout).
const settleMargin = 2 * time.Minute

// LongestUnacked is the longest a delivery of VIDEO_QUEUE stays unacked
// with this configuration: JOB_TIMEOUT, then the reports, then the retry
// backoff (the message is held while it waits) and the republish. It must
// stay below the broker's consumer_timeout.
func (c Config) LongestUnacked() time.Duration {
	return c.JobTimeout + c.MaxRetryBackoff + settleMargin
}

// Validate reports every bad value, each error naming its variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	if _, err := ParseBitrate(c.MP3Bitrate); err != nil {
		errs = append(errs, fmt.Errorf("MP3_BITRATE: %w", err))
	}
	if err := config.CheckPort("PORT", c.Port); err != nil {
		errs = append(errs, err)
	}
	bad(strings.TrimSpace(c.VideoQueue) != "", "VIDEO_QUEUE is empty")
	bad(strings.TrimSpace(c.MP3Queue) != "", "MP3_QUEUE is empty")
	bad(c.VideoQueue != c.MP3Queue, "VIDEO_QUEUE and MP3_QUEUE must differ")
	bad(c.FFmpegPath != "", "FFMPEG_PATH is empty")
	bad(c.FFprobePath != "", "FFPROBE_PATH is empty")
	bad(c.Concurrency >= 0, "CONCURRENCY must be ≥ 0")
	bad(c.Prefetch >= 0, "PREFETCH must be ≥ 0")
	bad(c.MaxAttempts >= 1, "MAX_ATTEMPTS must be ≥ 1")
	bad(c.MaxRedeliveries >= 1, "MAX_REDELIVERIES must be ≥ 1")
	bad(c.RetryBackoff > 0 && c.MaxRetryBackoff > 0, "RETRY_BACKOFF and MAX_RETRY_BACKOFF must be > 0")
	bad(c.MaxDuration > 0, "MAX_DURATION must be > 0")
	bad(c.MaxInputBytes > 0, "MAX_INPUT_BYTES must be > 0")
	if err := c.Retention.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.StoreConfig.Validate(); err != nil {
		errs = append(errs, err)
	}
	bad(c.ScratchLimit >= 0, "SCRATCH_LIMIT_BYTES must be ≥ 0 (0: no limit but the file system's free space)")
	bad(c.ProbeTimeout > 0 && c.JobTimeout > 0 && c.ShutdownTimeout > 0,
		"PROBE_TIMEOUT, JOB_TIMEOUT and SHUTDOWN_TIMEOUT must be > 0")
	bad(c.LeaseTTL >= 3*time.Second, "JOB_LEASE_TTL must be ≥ 3s (it is renewed every third of it)")
	bad(c.BrokerConsumerTimeout >= 0, "BROKER_CONSUMER_TIMEOUT must be ≥ 0 (0: the broker has no consumer timeout)")
	bad(c.BrokerConsumerTimeout <= 0 || c.LongestUnacked() < c.BrokerConsumerTimeout,
		"JOB_TIMEOUT %s + MAX_RETRY_BACKOFF %s + %s (reports, republishing) must stay below "+
			"BROKER_CONSUMER_TIMEOUT %s, RabbitMQ's consumer_timeout: a message unacked longer than that is taken back "+
			"by the broker and handed to another converter while this one still converts it. Lower JOB_TIMEOUT, or raise "+
			"consumer_timeout in RabbitMQ's configuration and BROKER_CONSUMER_TIMEOUT with it",
		c.JobTimeout, c.MaxRetryBackoff, settleMargin, c.BrokerConsumerTimeout)
	return errors.Join(errs...)
}

// Options turns a valid configuration into the service's Options; it also
// checks that SCRATCH_DIR is a directory.
func (c Config) Options() (Options, error) {
	if err := c.Validate(); err != nil {
		return Options{}, err
	}
	bps, _ := ParseBitrate(c.MP3Bitrate)
	scratch := c.ScratchDir
	if scratch == "" {
		scratch = os.TempDir()
	}
	if st, err := os.Stat(scratch); err != nil || !st.IsDir() {
		return Options{}, fmt.Errorf("SCRATCH_DIR %q is not a directory", scratch)
	}
	conc := c.Concurrency
	if conc == 0 {
		conc = runtime.NumCPU()
	}
	return Options{
		VideoQueue:  c.VideoQueue,
		MP3Queue:    c.MP3Queue,
		FFmpegPath:  c.FFmpegPath,
		FFprobePath: c.FFprobePath,
		Bitrate:     c.MP3Bitrate,
		BitrateBPS:  bps,
		Consume: mq.ConsumeOptions{Concurrency: conc, Prefetch: c.Prefetch, MaxAttempts: c.MaxAttempts,
			MaxRedeliveries: c.MaxRedeliveries, RetryBackoff: c.RetryBackoff, MaxBackoff: c.MaxRetryBackoff,
			ShutdownTimeout: c.ShutdownTimeout},
		ScratchDir:      scratch,
		ScratchLimit:    c.ScratchLimit,
		StreamFaststart: c.StreamFaststart,
		SeekableInput:   c.SeekableInput,
		MaxDuration:     c.MaxDuration,
		MaxInputBytes:   c.MaxInputBytes,
		ProbeTimeout:    c.ProbeTimeout,
		JobTimeout:      c.JobTimeout,
		LeaseTTL:        c.LeaseTTL,
		KeepVideos:      c.Retention.KeepVideos,
	}, nil
}

// ParseBitrate parses an ffmpeg bitrate such as "128k" or "192000" into bits
// per second, accepting the MP3 range 8k–320k.
func ParseBitrate(s string) (int, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	mult := 1
	if strings.HasSuffix(t, "k") {
		mult, t = 1000, strings.TrimSuffix(t, "k")
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return 0, fmt.Errorf("bitrate %q: want a number of bits per second such as 128k", s)
	}
	bps := n * mult
	if bps < 8000 || bps > 320000 {
		return 0, fmt.Errorf("bitrate %q: MP3 bitrates are 8k to 320k", s)
	}
	return bps, nil
}
