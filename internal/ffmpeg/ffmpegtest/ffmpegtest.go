// Package ffmpegtest helps the tests that run ffmpeg: short media clips
// generated with the ffmpeg of FFMPEG_PATH, and a listener that counts the
// connections a hostile input makes ffmpeg open.
package ffmpegtest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"mp3converter/internal/testenv"
)

// ClipSeconds is the length of the generated clips.
const ClipSeconds = 3

// specs are ffmpeg output options per generated file; the inputs are a
// 440 Hz sine (0) and a test pattern (1).
var specs = map[string][]string{
	"mp4":           {"-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "mp4"},
	"mp4-faststart": {"-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-movflags", "+faststart", "-f", "mp4"},
	"webm":          {"-map", "1:v", "-map", "0:a", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus", "-f", "webm"},
	"avi-mp3":       {"-map", "1:v", "-map", "0:a", "-c:v", "mpeg4", "-c:a", "libmp3lame", "-b:a", "192k", "-f", "avi"},
	"mov":           {"-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "mov"},
	"mkv":           {"-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libvorbis", "-f", "matroska"},
	"noaudio":       {"-map", "1:v", "-c:v", "libx264", "-preset", "ultrafast", "-f", "mp4"},
	// Its audio stops after 1 s; the container lasts as its video does.
	"shortaudio": {"-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-af", "atrim=end=1", "-c:a", "aac", "-f", "mp4"},
	"ts":         {"-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "mpegts"},
	"mp3":        {"-map", "0:a", "-c:a", "libmp3lame", "-b:a", "192k", "-f", "mp3"},
	"wav":        {"-map", "0:a", "-c:a", "pcm_s16le", "-f", "wav"},
	"ogg":        {"-map", "0:a", "-c:a", "libvorbis", "-f", "ogg"},
}

var media struct {
	sync.Mutex
	dir string // made by Main, removed when it returns
}

// Main runs a test binary's tests (call it from TestMain) with a directory
// for the generated clips, removed at the end; it returns the exit code.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "ffmpegtest-media-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	media.dir = dir
	defer os.RemoveAll(dir)
	return m.Run()
}

// Dir is the directory of the generated clips, where a test may keep other
// generated media for the run (see Main).
func Dir() string { return media.dir }

// Media returns the path of the generated clip name, ClipSeconds long
// ("mp4", "mp4-faststart", "webm", "avi-mp3", "mov", "mkv", "noaudio",
// "ts", "mp3", "wav", "ogg"), generating it on first use.
func Media(t testing.TB, name string) string {
	t.Helper()
	spec, ok := specs[name]
	if !ok {
		t.Fatalf("no media spec %q", name)
	}
	media.Lock()
	defer media.Unlock()
	if media.dir == "" {
		t.Fatal("ffmpegtest.Media needs ffmpegtest.Main in TestMain")
	}
	path := filepath.Join(media.dir, name)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	ffmpeg := testenv.Getenv(t, "FFMPEG_PATH")
	d := strconv.Itoa(ClipSeconds)
	args := []string{"-nostdin", "-v", "error", "-y",
		"-f", "lavfi", "-i", "sine=frequency=440:duration=" + d,
		"-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=" + d}
	args = append(append(args, spec...), path+".tmp")
	if out, err := exec.Command(ffmpeg, args...).CombinedOutput(); err != nil {
		t.Fatalf("generate %s: %v: %s", name, err, out)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return path
}

// ConnCounter is a TCP listener on 127.0.0.1 that counts the connections
// it gets: the "internal address" a hostile playlist points ffmpeg at.
type ConnCounter struct {
	ln net.Listener
	n  atomic.Int32
}

// NewConnCounter listens until the test ends.
func NewConnCounter(t testing.TB) *ConnCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &ConnCounter{ln: ln}
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

// Addr is the listener's host:port.
func (c *ConnCounter) Addr() string { return c.ln.Addr().String() }

// Conns is the number of connections so far.
func (c *ConnCounter) Conns() int { return int(c.n.Load()) }

// ConnsSoFar is Conns once the accept loop has caught up with every
// connection made before the call: it makes one of its own and waits for
// the answer, which comes only after the earlier ones were accepted (and
// counted), since a listener accepts them in order. Its own is not counted.
func (c *ConnCounter) ConnsSoFar(t testing.TB) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", c.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\n"); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		t.Fatalf("no answer from %s: %v", c.Addr(), err)
	}
	return c.Conns() - 1
}
