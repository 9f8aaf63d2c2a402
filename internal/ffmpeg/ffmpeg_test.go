package ffmpeg

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"mp3converter/internal/ffmpeg/ffmpegtest"
	"mp3converter/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(ffmpegtest.Main(m)) }

var (
	media   = ffmpegtest.Media
	errTest = errors.New("test error")
)

// maxPrefix is the limit the converter sniffs with.
const maxPrefix = 8 << 20

// toMP3 are output options converting the first audio stream to MP3.
var toMP3 = []string{"-map", "0:a:0", "-vn", "-sn", "-dn", "-c:a", "libmp3lame", "-b:a", "128k", "-t", "3600.000", "-f", "mp3"}

// probe probes in within 30 seconds.
func probe(ffprobe string, in Input) (Info, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Probe(ctx, ffprobe, in)
}

// run runs c to its end: its output, and Wait's error, else Read's.
func run(c Cmd) ([]byte, Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Start(ctx, c)
	if err != nil {
		return nil, Result{}, err
	}
	out, rerr := io.ReadAll(p)
	res, werr := p.Wait()
	if werr != nil {
		return out, res, werr
	}
	return out, res, rerr
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
			prefix, ok, err := SniffFaststart(iotest.OneByteReader(bytes.NewReader(c.data)), c.limit)
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
		prefix, ok, err := SniffFaststart(r, maxPrefix)
		if err != nil || ok != want {
			t.Errorf("%s: ok = %v, %v; want %v", name, ok, err, want)
		}
		rest, _ := io.ReadAll(r)
		if !bytes.Equal(append(prefix, rest...), data) {
			t.Errorf("%s: prefix + rest differs from the file", name)
		}
	}
	if _, _, err := SniffFaststart(iotest.ErrReader(errTest), maxPrefix); err == nil {
		t.Error("read error not returned")
	}
}

// ffprobe and ffmpeg themselves open only files and pipes, and only with
// media demuxers: an input that reaches them despite the sniffing (a
// script ffmpeg would follow, a URL) is refused and nothing is fetched,
// whatever this ffmpeg build allows by default.
func TestFFmpegInputsAreWhitelisted(t *testing.T) {
	t.Parallel()
	ffmpeg, ffprobe := testenv.Getenv(t, "FFMPEG_PATH"), testenv.Getenv(t, "FFPROBE_PATH")
	dir := t.TempDir()

	// A concat script naming a local clip by a relative (so "safe") name:
	// ffmpeg's own defaults read it, and the clip it names.
	if err := os.Symlink(media(t, "mp4"), filepath.Join(dir, "clip.mp4")); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "script.video")
	if err := os.WriteFile(script, []byte("ffconcat version 1.0\nfile clip.mp4\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := probe(ffprobe, File(script)); !errors.Is(err, ErrNotMedia) {
		t.Errorf("probe of an ffconcat script: %v, want ErrNotMedia", err)
	}
	out, _, err := run(Cmd{Path: ffmpeg, Input: File(script), Output: toMP3})
	if err == nil || len(out) > 0 {
		t.Errorf("ffmpeg on an ffconcat script: %d bytes of MP3, err %v; want refused", len(out), err)
	}

	// A URL as the input: never opened.
	target := ffmpegtest.NewConnCounter(t)
	url := Input{name: "http://" + target.Addr() + "/v.mp4"}
	if _, err := probe(ffprobe, url); err == nil {
		t.Error("probe of an http URL succeeded")
	}
	if out, _, err := run(Cmd{Path: ffmpeg, Input: url, Output: toMP3}); err == nil || len(out) > 0 {
		t.Errorf("ffmpeg on an http URL: %d bytes, err %v; want refused", len(out), err)
	}
	// ffprobe and ffmpeg have exited: a connection either made was accepted
	// before this one.
	if n := target.ConnsSoFar(t); n != 0 {
		t.Errorf("%d connections to the URL given as input; want none", n)
	}

	// Media still probes, from a file and from a pipe.
	for _, name := range []string{"mp4", "mkv", "webm"} {
		if pr, err := probe(ffprobe, File(media(t, name))); err != nil || pr.Audio == nil {
			t.Errorf("probe of %s from a file: %+v, %v", name, pr, err)
		}
		f, err := os.Open(media(t, name))
		if err != nil {
			t.Fatal(err)
		}
		pr, err := probe(ffprobe, Pipe(f))
		f.Close()
		if err != nil || pr.Audio == nil {
			t.Errorf("probe of %s from a pipe: %+v, %v", name, pr, err)
		}
	}
}

// Every name in the demuxer whitelist is a demuxer of the ffmpeg under
// test (a typo would silently refuse a format), and none of the
// playlist or script demuxers is in it.
func TestDemuxerWhitelistNamesRealDemuxers(t *testing.T) {
	t.Parallel()
	ffmpeg := testenv.Getenv(t, "FFMPEG_PATH")
	out, err := exec.Command(ffmpeg, "-hide_banner", "-demuxers").Output()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && strings.Contains(f[0], "D") && f[0] != "--" {
			for _, n := range strings.Split(f[1], ",") {
				known[n] = true
			}
		}
	}
	if len(known) < 50 {
		t.Fatalf("only %d demuxers parsed from:\n%s", len(known), out)
	}
	for _, n := range strings.Split(mediaDemuxers, ",") {
		if !known[n] {
			t.Errorf("%q in the whitelist is not a demuxer of %s", n, ffmpeg)
		}
	}
	for _, n := range []string{"hls", "dash", "concat", "sdp", "rtsp", "ffmetadata", "image2", "lavfi", "tee", "webm_dash_manifest"} {
		if strings.Contains(","+mediaDemuxers+",", ","+n+",") {
			t.Errorf("%q is in the whitelist", n)
		}
	}
}

func TestScriptKind(t *testing.T) {
	for _, c := range []struct {
		head, want string
	}{
		{"#EXTM3U\n", "an HLS playlist (M3U8)"},
		{"  #extm3u\n", "an HLS playlist (M3U8)"},
		{"\xef\xbb\xbf#EXTM3U", "an HLS playlist (M3U8)"},
		{"#EXTINF:1,\nx.ts\n", "an HLS playlist (M3U8)"},
		{"ffconcat version 1.0\n", "an ffconcat script"},
		{"<?xml version=\"1.0\"?>\n<MPD>", "a DASH manifest (MPD)"},
		{"<mpd xmlns=\"urn:mpeg:dash:schema:mpd:2011\">", "a DASH manifest (MPD)"},
		{"<?xml version=\"1.0\"?><smil/>", "an XML or HTML document"},
		{"v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\n", "an SDP session description"},
		{"s=x\nc=IN IP4 10.0.0.1\n", "an SDP session description"},
		{";FFMETADATA1\n", "an FFmpeg metadata file"},
		{"[playlist]\nFile1=http://x/\n", "a PLS playlist"},
		// Media, and text that is neither.
		{"\x00\x00\x00\x20ftypisom", ""},
		{"\x1aE\xdf\xa3\x9fB\x86\x81\x01", ""},
		{"ID3\x04\x00\x00\x00\x00\x00\x00#EXTM3U", ""},
		{"RIFF\x24\x00\x00\x00WAVEfmt ", ""},
		{"OggS\x00\x02", ""},
		{"hello, this is not a video\n", ""},
		{"", ""},
		// Binary data that happens to contain the words is media's business.
		{"\x00\x01\x02c=IN IP4 1.2.3.4\n#EXTM3U", ""},
	} {
		if got := ScriptKind([]byte(c.head)); got != c.want {
			t.Errorf("ScriptKind(%q) = %q, want %q", c.head, got, c.want)
		}
	}
}

// A run's output ends in io.EOF only when ffmpeg succeeded and Check
// agreed; otherwise its reader gets the failure in its place, and Wait
// says which it was.
func TestRunFailuresTakeThePlaceOfEOF(t *testing.T) {
	t.Parallel()
	ffmpeg := testenv.Getenv(t, "FFMPEG_PATH")
	clip := float64(ffmpegtest.ClipSeconds)

	t.Run("done", func(t *testing.T) {
		var checked Result
		out, res, err := run(Cmd{Path: ffmpeg, Input: File(media(t, "wav")), Output: toMP3,
			Check: func(r Result) error { checked = r; return nil }})
		if err != nil || len(out) == 0 || !res.Complete {
			t.Fatalf("%d bytes, %+v, %v; want an MP3", len(out), res, err)
		}
		if s := res.Position.Seconds(); s < clip-0.5 || s > clip+0.5 || checked != res {
			t.Errorf("position %+v, checked %+v; want about %v s for both", res, checked, clip)
		}
	})
	t.Run("check refuses", func(t *testing.T) {
		out, res, err := run(Cmd{Path: ffmpeg, Input: File(media(t, "wav")), Output: toMP3,
			Check: func(Result) error { return errTest }})
		if !errors.Is(err, errTest) || len(out) == 0 || !res.Complete {
			t.Errorf("%d bytes, %+v, %v; want the output, then the check's error", len(out), res, err)
		}
	})
	t.Run("ffmpeg fails", func(t *testing.T) {
		_, res, err := run(Cmd{Path: ffmpeg, Input: File(media(t, "noaudio")), Output: toMP3})
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Stderr == "" || !res.Complete {
			t.Errorf("%+v, %v; want an *ExitError with ffmpeg's error output", res, err)
		}
	})
	t.Run("input fails", func(t *testing.T) {
		data, err := os.ReadFile(media(t, "wav"))
		if err != nil {
			t.Fatal(err)
		}
		src := io.MultiReader(bytes.NewReader(data[:len(data)/2]), iotest.ErrReader(errTest))
		_, _, err = run(Cmd{Path: ffmpeg, Input: Pipe(src), Output: toMP3})
		if !errors.Is(err, ErrInput) || !errors.Is(err, errTest) {
			t.Errorf("%v; want ErrInput and the reader's error", err)
		}
	})
}

// Fragmented tells a fragmented MP4 from the others and other containers.
func TestFragmented(t *testing.T) {
	t.Parallel()
	ffmpeg := testenv.Getenv(t, "FFMPEG_PATH")
	frag := filepath.Join(t.TempDir(), "frag.mp4")
	if out, err := exec.Command(ffmpeg, "-nostdin", "-v", "error", "-y", "-i", media(t, "mp4"), "-c", "copy",
		"-movflags", "frag_keyframe+empty_moov", "-frag_duration", "1000000", frag).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, c := range []struct {
		path string
		want bool
	}{
		{media(t, "mp4"), false}, {media(t, "mov"), false}, {media(t, "mp4-faststart"), false},
		{frag, true}, {media(t, "mkv"), false}, {media(t, "webm"), false}, {media(t, "wav"), false},
	} {
		b, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := Fragmented(b[:min(len(b), 64<<10)]); got != c.want {
			t.Errorf("%s: Fragmented %v, want %v", filepath.Base(c.path), got, c.want)
		}
	}
}

// A run tells what its input holds, from ffmpeg's own dump of it, as
// ffprobe does: the format, the container's duration and the first audio
// stream's codec; nothing for an input it cannot open.
func TestRunReportsItsInput(t *testing.T) {
	t.Parallel()
	ffmpeg, ffprobe := testenv.Getenv(t, "FFMPEG_PATH"), testenv.Getenv(t, "FFPROBE_PATH")
	for _, name := range []string{"mp4", "mkv", "avi-mp3", "webm", "ts", "mp3", "wav", "ogg", "noaudio"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := File(media(t, name))
			want, err := probe(ffprobe, in)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, err := Start(ctx, Cmd{Path: ffmpeg, Input: in, Output: toMP3})
			if err != nil {
				t.Fatal(err)
			}
			got, ok := p.Input(ctx)
			_, _ = io.Copy(io.Discard, p)
			_, werr := p.Wait()
			if !ok || got.Format != want.Format || got.Duration < want.Duration-0.01 || got.Duration > want.Duration+0.01 {
				t.Errorf("input %+v, %v; ffprobe: %+v", got, ok, want)
			}
			switch {
			case want.Audio == nil && (got.Audio != nil || werr == nil):
				t.Errorf("audio %+v, run %v; want none, and a failure", got.Audio, werr)
			case want.Audio != nil && (got.Audio == nil || got.Audio.Codec != want.Audio.Codec || got.Audio.SampleRate != want.Audio.SampleRate):
				t.Errorf("audio %+v; ffprobe: %+v", got.Audio, want.Audio)
			}
		})
	}
	t.Run("not media", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "noise.mp4")
		if err := os.WriteFile(path, bytes.Repeat([]byte("not a video "), 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p, err := Start(ctx, Cmd{Path: ffmpeg, Input: File(path), Output: toMP3})
		if err != nil {
			t.Fatal(err)
		}
		got, ok := p.Input(ctx)
		_, rerr := io.Copy(io.Discard, p)
		var ee *ExitError
		if ok || !errors.As(rerr, &ee) || !strings.Contains(ee.Stderr, "Invalid data") || strings.Contains(ee.Stderr, "[info]") {
			t.Errorf("input %+v, %v, read %v; want none, and ffmpeg's error lines alone", got, ok, rerr)
		}
		_, _ = p.Wait()
	})
}

// The dump is read from ffmpeg's own lines only: not from what a file's
// metadata, printed below its stream, says, nor from a demuxer's messages;
// an endless line is cut.
func TestReportLines(t *testing.T) {
	r := newReport()
	lines := strings.Join([]string{
		"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d] [info]   Stream #0:0: Audio: mp3, 8000 Hz",
		"[info] Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'http://127.0.0.1:1/x':",
		"[info]   Metadata:",
		"[info]     title           :   Duration: 99:00:00.00",
		"[info]     comment         :   Stream #0:3: Audio: mp3, 8000 Hz",
		"[info]   Duration: 00:05:00.02, start: 0.000000, bitrate: 7654 kb/s",
		"[info]   Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p, 1280x720, 30 fps (default)",
		"[info]     Metadata:",
		"[info]       handler_name    : Stream #0:2: Audio: mp3",
		"[info]   Stream #0:1[0x2](eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 128 kb/s (default)",
		"[info]   Stream #0:2[0x3](und): Audio: mp3, 44100 Hz, mono, fltp, 64 kb/s",
		"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d] [error] stream 1, offset 0x30: partial file",
		"[info] Stream mapping:",
		"[info]   Stream #0:3: Audio: mp3, 8000 Hz",
		"[error] " + strings.Repeat("x", 3*maxLine),
		"",
	}, "\n")
	for chunk := range slices.Chunk([]byte(lines), 7) { // lines arrive in pieces
		_, _ = r.Write(chunk)
	}
	info, ok := r.input()
	want := Info{Format: "mov,mp4,m4a,3gp,3g2,mj2", Duration: 300.02,
		Audio: &Audio{Codec: "aac", SampleRate: 48000, Channels: 2, BitRate: 128000}}
	if !ok || info.Format != want.Format || info.Duration != want.Duration || info.Audio == nil || *info.Audio != *want.Audio {
		t.Errorf("input %+v (audio %+v), %v; want %+v (audio %+v)", info, info.Audio, ok, want, want.Audio)
	}
	select {
	case <-r.ended:
	default:
		t.Error("the dump did not end at Stream mapping")
	}
	errs := r.String()
	if !strings.HasPrefix(errs, "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d] stream 1, offset 0x30: partial file\n") ||
		strings.Contains(errs, "[info]") || strings.Contains(errs, "[error]") || len(errs) > 1200 {
		t.Errorf("error lines %.200q (%d bytes); want the two errors, without their level, cut", errs, len(errs))
	}
}
