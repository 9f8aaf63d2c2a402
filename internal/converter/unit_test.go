package converter

import (
	"os"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/config"
	"mp3converter/internal/ffmpeg"
	"mp3converter/internal/gridfs"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := config.LoadFrom[Config](map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	opt, err := cfg.Options()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Port != 8081 || opt.VideoQueue != "video" || opt.MP3Queue != "mp3" || opt.Bitrate != "128k" ||
		opt.BitrateBPS != 128000 || opt.MaxDuration != 3*time.Hour || opt.Consume.Concurrency < 1 ||
		opt.ScratchDir != os.TempDir() || opt.Consume.MaxAttempts != 5 || opt.Consume.MaxRedeliveries != 10 || !opt.StreamFaststart {
		t.Errorf("defaults: %+v / %+v", cfg, opt)
	}
	if cfg.MongoURI.String() == cfg.MongoURI.Reveal() {
		t.Error("MONGODB_URI is not masked")
	}
	for name, vars := range map[string]map[string]string{
		"bitrate":      {"MP3_BITRATE": "loud"},
		"high":         {"MP3_BITRATE": "512k"},
		"same":         {"VIDEO_QUEUE": "q", "MP3_QUEUE": "q"},
		"attempts":     {"MAX_ATTEMPTS": "0"},
		"redeliveries": {"MAX_REDELIVERIES": "0"},
		"scratch":      {"SCRATCH_DIR": "/nonexistent/dir"},
		"duration":     {"MAX_DURATION": "0s"},
		"negative":     {"CONCURRENCY": "-1"},
	} {
		cfg, err := config.LoadFrom[Config](vars)
		if err == nil {
			_, err = cfg.Options()
		}
		if err == nil {
			t.Errorf("%s: %v accepted", name, vars)
		}
	}
}

func TestParseBitrate(t *testing.T) {
	for in, want := range map[string]int{"128k": 128000, "320K": 320000, "64000": 64000, " 96k ": 96000} {
		if got, err := ParseBitrate(in); err != nil || got != want {
			t.Errorf("ParseBitrate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "1M", "7k", "321k", "-128k"} {
		if _, err := ParseBitrate(in); err == nil {
			t.Errorf("ParseBitrate(%q) accepted", in)
		}
	}
}

func TestMP3Name(t *testing.T) {
	meta, _ := bson.Marshal(bson.M{"filename": "from-meta.mkv"})
	for _, c := range []struct {
		msg  string
		info gridfs.FileInfo
		want string
	}{
		{"holiday.mp4", gridfs.FileInfo{}, "holiday.mp3"},
		{"my.home.video.MOV", gridfs.FileInfo{}, "my.home.video.mp3"},
		{`C:\Users\bob\clip.avi`, gridfs.FileInfo{}, "clip.mp3"},
		{"noext", gridfs.FileInfo{}, "noext.mp3"},
		{"", gridfs.FileInfo{Metadata: meta, Name: "files-doc.mp4"}, "from-meta.mp3"},
		{"", gridfs.FileInfo{Name: "files-doc.mp4"}, "files-doc.mp3"},
		{"", gridfs.FileInfo{}, "0123.mp3"},
		{".mp4", gridfs.FileInfo{}, "0123.mp3"},
	} {
		if got := mp3Name(c.msg, c.info, "0123"); got != c.want {
			t.Errorf("mp3Name(%q) = %q, want %q", c.msg, got, c.want)
		}
	}
}

func TestFFmpegArgs(t *testing.T) {
	// The command line ffmpeg.Start runs with mp3Args.
	ffmpegArgs := func(input string, a *ffmpeg.Audio, bitrate string, maxDur time.Duration) ([]string, bool) {
		out, copied := mp3Args(a, bitrate, maxDur)
		return ffmpeg.Cmd{Input: ffmpeg.File(input), Output: out}.Args(), copied
	}
	args, copied := ffmpegArgs("in", &ffmpeg.Audio{Codec: "mp3"}, "128k", time.Hour)
	if !copied || !slices.Contains(args, "copy") || slices.Contains(args, "libmp3lame") {
		t.Errorf("mp3 source: %v", args)
	}
	args, copied = ffmpegArgs("in", &ffmpeg.Audio{Codec: "aac", SampleRate: 96000, Channels: 6}, "192k", 90*time.Minute)
	want := []string{"-c:a", "libmp3lame", "-b:a", "192k", "-ar", "48000", "-ac", "2", "-t", "5400.000", "-f", "mp3", "pipe:1"}
	if copied || !slices.Equal(args[len(args)-len(want):], want) || !slices.Contains(args, "-vn") {
		t.Errorf("aac source: %v", args)
	}
	// Not probed: encoded, ffmpeg's negotiation picking rate and layout.
	args, copied = ffmpegArgs("in", nil, "128k", time.Hour)
	want = []string{"-c:a", "libmp3lame", "-b:a", "128k", "-t", "3600.000", "-f", "mp3", "pipe:1"}
	if copied || !slices.Equal(args[len(args)-len(want):], want) {
		t.Errorf("unprobed source: %v", args)
	}
}

func TestDurationText(t *testing.T) {
	for d, want := range map[time.Duration]string{3 * time.Hour: "3-hour", time.Hour: "1-hour",
		90 * time.Minute: "90-minute", 2 * time.Second: "2s"} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%s) = %q, want %q", d, got, want)
		}
	}
}
