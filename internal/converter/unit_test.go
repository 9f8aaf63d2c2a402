package converter

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"slices"
	"testing"
	"testing/iotest"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/config"
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
		opt.BitrateBPS != 128000 || opt.MaxDuration != 3*time.Hour || opt.Concurrency < 1 ||
		opt.ScratchDir != os.TempDir() || opt.MaxAttempts != 5 || opt.MaxRedeliveries != 10 || !opt.StreamFaststart {
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

func box(typ string, payload int) []byte {
	b := make([]byte, 8+payload)
	binary.BigEndian.PutUint32(b, uint32(8+payload))
	copy(b[4:], typ)
	return b
}

func TestSniffFaststart(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	large := make([]byte, 16)
	binary.BigEndian.PutUint32(large, 1)
	copy(large[4:], "free")
	binary.BigEndian.PutUint64(large[8:], 100)
	large = append(large, make([]byte, 84)...)
	cases := []struct {
		name  string
		data  []byte
		limit int
		want  bool
	}{
		{"faststart", cat(box("ftyp", 24), box("moov", 3000), box("mdat", 10000)), maxPrefix, true},
		{"free before moov", cat(box("ftyp", 24), box("free", 8), box("moov", 100), box("mdat", 100)), maxPrefix, true},
		{"largesize box", cat(box("ftyp", 24), large, box("moov", 100), box("mdat", 100)), maxPrefix, true},
		{"index at the end", cat(box("ftyp", 24), box("free", 0), box("mdat", 10000), box("moov", 3000)), maxPrefix, false},
		{"moov beyond the limit", cat(box("ftyp", 24), box("moov", 5000), box("mdat", 10)), 4096, false},
		{"truncated moov", cat(box("ftyp", 24), box("moov", 5000))[:3000], maxPrefix, false},
		{"fragmented", cat(box("ftyp", 24), box("moof", 100), box("mdat", 100)), maxPrefix, false},
		{"not mp4", []byte("\x1aE\xdf\xa3 matroska and more bytes"), maxPrefix, false},
		{"zero size box", cat(box("ftyp", 24), []byte{0, 0, 0, 0, 'm', 'o', 'o', 'v'}, make([]byte, 100)), maxPrefix, false},
		{"tiny", []byte("abc"), maxPrefix, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// One byte per Read: the sniffer must not depend on read sizes.
			prefix, ok, err := sniffFaststart(iotest.OneByteReader(bytes.NewReader(c.data)), c.limit)
			if err != nil || ok != c.want {
				t.Fatalf("ok = %v, %v; want %v", ok, err, c.want)
			}
			if !bytes.HasPrefix(c.data, prefix) || len(prefix) > c.limit {
				t.Fatalf("prefix of %d bytes is not the start of the input", len(prefix))
			}
		})
	}
	// Real files: prefix + rest replays the input exactly.
	for name, want := range map[string]bool{"mp4-faststart": true, "mp4": false, "mov": false, "webm": false} {
		if os.Getenv("FFMPEG_PATH") == "" {
			t.Skip("FFMPEG_PATH not set")
		}
		data, err := os.ReadFile(media(t, name))
		if err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(data)
		prefix, ok, err := sniffFaststart(r, maxPrefix)
		if err != nil || ok != want {
			t.Errorf("%s: ok = %v, %v; want %v", name, ok, err, want)
		}
		rest, _ := io.ReadAll(r)
		if !bytes.Equal(append(prefix, rest...), data) {
			t.Errorf("%s: prefix + rest differs from the file", name)
		}
	}
	if _, _, err := sniffFaststart(iotest.ErrReader(errTest), maxPrefix); err == nil {
		t.Error("read error not returned")
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
	args, copied := ffmpegArgs("in", &audioStream{Codec: "mp3"}, "128k", time.Hour)
	if !copied || !slices.Contains(args, "copy") || slices.Contains(args, "libmp3lame") {
		t.Errorf("mp3 source: %v", args)
	}
	args, copied = ffmpegArgs("in", &audioStream{Codec: "aac", SampleRate: 96000, Channels: 6}, "192k", 90*time.Minute)
	want := []string{"-c:a", "libmp3lame", "-b:a", "192k", "-ar", "48000", "-ac", "2", "-t", "5400.000", "-f", "mp3", "pipe:1"}
	if copied || !slices.Equal(args[len(args)-len(want):], want) || !slices.Contains(args, "-vn") {
		t.Errorf("aac source: %v", args)
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

func TestReadAhead(t *testing.T) {
	data := make([]byte, 1<<20+123)
	for i := range data {
		data[i] = byte(i * 7)
	}
	ra := newReadAhead(iotest.HalfReader(bytes.NewReader(data)), 3, 1000)
	got, err := io.ReadAll(iotest.OneByteReader(io.LimitReader(ra, 5000)))
	if err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(ra)
	if err != nil || !bytes.Equal(append(got, rest...), data) {
		t.Fatalf("read-ahead changed the data (err %v)", err)
	}
	ra.Close()

	// The source's error comes after its bytes.
	ra = newReadAhead(io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(errTest)), 2, 4)
	got, err = io.ReadAll(ra)
	if !bytes.Equal(got, data[:10]) || err != errTest {
		t.Fatalf("got %d bytes, %v; want 10 bytes then the source's error", len(got), err)
	}
	ra.Close()

	// Close with the buffers full and nobody reading returns.
	ra = newReadAhead(bytes.NewReader(data), 2, 10)
	time.Sleep(10 * time.Millisecond)
	done := make(chan struct{})
	go func() { ra.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked")
	}
}
