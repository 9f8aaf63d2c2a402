package converter

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"mp3converter/internal/testenv"
)

// connCounter is a TCP listener on 127.0.0.1 that counts the connections
// it gets: the "internal address" a hostile playlist points ffmpeg at.
type connCounter struct {
	ln net.Listener
	n  atomic.Int32
}

func newConnCounter(t *testing.T) *connCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &connCounter{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.n.Add(1)
			// Answer like a web server would, so that a client that got
			// here goes on rather than failing at once.
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = bufio.NewReader(conn).ReadString('\n')
				_, _ = io.WriteString(conn, "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
			}()
		}
	}()
	return c
}

func (c *connCounter) addr() string { return c.ln.Addr().String() }

// Playlists, manifests and scripts (text that makes ffmpeg open other
// files or URLs) uploaded as a video fail for good with a reason that
// names what the file is; ffmpeg never runs on them, so nothing they point
// at is fetched.
func TestPlaylistsAndScriptsAreRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start(h.deps(), h.options())
	target := newConnCounter(t)
	url := "http://" + target.addr()
	_, port, _ := net.SplitHostPort(target.addr())

	cases := []struct {
		name, body, want string
	}{
		{"hls", "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\n" + url + "/seg0.ts\n#EXT-X-ENDLIST\n",
			"the file is an HLS playlist"},
		{"hls with BOM and CRLF", "\xef\xbb\xbf#EXTM3U\r\n#EXTINF:4.0,\r\n" + url + "/seg0.ts\r\n",
			"the file is an HLS playlist"},
		{"hls without header", "\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\n" + url + "/seg0.ts\n",
			"the file is an HLS playlist"},
		{"dash", `<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT4S" minBufferTime="PT2S"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
  <Period><AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="128000">
    <BaseURL>` + url + `/audio.mp4</BaseURL><SegmentBase indexRange="0-100"/>
  </Representation></AdaptationSet></Period>
</MPD>
`, "the file is a DASH manifest"},
		{"ffconcat", "ffconcat version 1.0\nfile " + url + "/a.mp4\n", "the file is an ffconcat script"},
		{"sdp", "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " + port + " RTP/AVP 0\r\n",
			"the file is an SDP session description"},
		{"ffmetadata", ";FFMETADATA1\ntitle=" + url + "\n", "the file is an FFmpeg metadata file"},
		{"html", "<!DOCTYPE html>\n<html><body><video src=\"" + url + "/v.mp4\"></video></body></html>\n",
			"the file is an XML or HTML document"},
	}
	fids := make([]string, len(cases))
	for i, c := range cases {
		fids[i] = h.submit(strings.NewReader(c.body), "video.mp4", user)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { h.checkFailed(fids[i], c.want) })
	}
	if n := h.result(resultRetry); n != 0 {
		t.Errorf("%d retries of refused files", n)
	}
	time.Sleep(200 * time.Millisecond) // a connection on its way would have arrived
	if n := target.n.Load(); n != 0 {
		t.Errorf("%d connections to %s, the address the playlists point at; want none", n, target.addr())
	}
}

// ffprobe and ffmpeg themselves open only files and pipes, and only with
// media demuxers: an input that reaches them despite the sniffing (a
// script ffmpeg would follow, a URL) is refused and nothing is fetched,
// whatever this ffmpeg build allows by default.
func TestFFmpegInputsAreWhitelisted(t *testing.T) {
	t.Parallel()
	ffmpeg, ffprobe := testenv.Getenv(t, "FFMPEG_PATH"), testenv.Getenv(t, "FFPROBE_PATH")
	ctx := context.Background()
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
	if _, err := probe(ctx, ffprobe, fileInput(script), nil, 30*time.Second); !errors.Is(err, errNotMedia) {
		t.Errorf("probe of an ffconcat script: %v, want errNotMedia", err)
	}
	args, _ := ffmpegArgs(fileInput(script), &audioStream{Codec: "aac"}, "128k", time.Hour)
	out, err := exec.Command(ffmpeg, args...).Output()
	if err == nil || len(out) > 0 {
		t.Errorf("ffmpeg on an ffconcat script: %d bytes of MP3, err %v; want refused", len(out), err)
	}

	// A URL as the input: never opened.
	target := newConnCounter(t)
	if _, err := probe(ctx, ffprobe, "http://"+target.addr()+"/v.mp4", nil, 30*time.Second); err == nil {
		t.Error("probe of an http URL succeeded")
	}
	args, _ = ffmpegArgs("http://"+target.addr()+"/v.mp4", &audioStream{Codec: "aac"}, "128k", time.Hour)
	if out, err := exec.Command(ffmpeg, args...).Output(); err == nil || len(out) > 0 {
		t.Errorf("ffmpeg on an http URL: %d bytes, err %v; want refused", len(out), err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := target.n.Load(); n != 0 {
		t.Errorf("%d connections to the URL given as input; want none", n)
	}

	// Media still probes, from a file and from a pipe.
	for _, name := range []string{"mp4", "mkv", "webm"} {
		if pr, err := probe(ctx, ffprobe, fileInput(media(t, name)), nil, 30*time.Second); err != nil || pr.Audio == nil {
			t.Errorf("probe of %s from a file: %+v, %v", name, pr, err)
		}
		f, err := os.Open(media(t, name))
		if err != nil {
			t.Fatal(err)
		}
		pr, err := probe(ctx, ffprobe, "pipe:0", f, 30*time.Second)
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
		if got := scriptKind([]byte(c.head)); got != c.want {
			t.Errorf("scriptKind(%q) = %q, want %q", c.head, got, c.want)
		}
	}
}
