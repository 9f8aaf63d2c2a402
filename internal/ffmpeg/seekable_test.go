package ffmpeg

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"mp3converter/internal/ffmpeg/ffmpegtest"
	"mp3converter/internal/testenv"
)

// countingFile serves data through readers that count what they return.
type countingFile struct {
	data   []byte
	failAt int64 // a read at or past this offset fails (0: never)

	mu    sync.Mutex
	read  int64
	opens int
}

func (f *countingFile) open() io.ReadSeeker {
	f.mu.Lock()
	f.opens++
	f.mu.Unlock()
	return &countingReader{f: f, r: bytes.NewReader(f.data)}
}

func (f *countingFile) input() Input { return Seekable(f.open, int64(len(f.data))) }

type countingReader struct {
	f *countingFile
	r *bytes.Reader
}

func (c *countingReader) Read(p []byte) (int, error) {
	pos, _ := c.r.Seek(0, io.SeekCurrent)
	if c.f.failAt > 0 && pos+int64(len(p)) > c.f.failAt {
		if pos >= c.f.failAt {
			return 0, errTest
		}
		p = p[:c.f.failAt-pos]
	}
	n, err := c.r.Read(p)
	c.f.mu.Lock()
	c.f.read += int64(n)
	c.f.mu.Unlock()
	return n, err
}

func (c *countingReader) Seek(off int64, whence int) (int64, error) { return c.r.Seek(off, whence) }

// A Seekable input converts to the same MP3 as the same bytes in a local
// file, for an MP4 with its index at the end (which a pipe cannot give
// ffmpeg) and the other containers; ffprobe reads it too.
func TestSeekableConvertsLikeAFile(t *testing.T) {
	t.Parallel()
	ffmpeg, ffprobe := testenv.Getenv(t, "FFMPEG_PATH"), testenv.Getenv(t, "FFPROBE_PATH")
	for _, name := range []string{"mp4", "mp4-faststart", "mkv", "webm", "mov", "avi-mp3"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(media(t, name))
			if err != nil {
				t.Fatal(err)
			}
			f := &countingFile{data: data}
			pr, err := probe(ffprobe, f.input())
			if err != nil || pr.Audio == nil {
				t.Fatalf("probe: %+v, %v", pr, err)
			}
			want, _, err := run(Cmd{Path: ffmpeg, Input: File(media(t, name)), Output: toMP3})
			if err != nil {
				t.Fatal(err)
			}
			got, res, err := run(Cmd{Path: ffmpeg, Input: f.input(), Output: toMP3})
			if err != nil || !res.Complete {
				t.Fatalf("%+v, %v", res, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("MP3 of %d bytes from the seekable input, %d from the file: want the same", len(got), len(want))
			}
		})
	}
}

// A read error of a Seekable input (the storage failed) ends the run with
// ErrInput and the reader's error, never a short "successful" MP3, and a
// probe's error is not ErrNotMedia (the file is not to blame).
func TestSeekableInputFails(t *testing.T) {
	t.Parallel()
	ffmpeg, ffprobe := testenv.Getenv(t, "FFMPEG_PATH"), testenv.Getenv(t, "FFPROBE_PATH")
	data, err := os.ReadFile(media(t, "mkv"))
	if err != nil {
		t.Fatal(err)
	}
	f := &countingFile{data: data, failAt: int64(len(data) / 2)}
	out, _, err := run(Cmd{Path: ffmpeg, Input: f.input(), Output: toMP3})
	if !errors.Is(err, ErrInput) || !errors.Is(err, errTest) {
		t.Errorf("%d bytes, %v; want ErrInput and the reader's error", len(out), err)
	}
	f = &countingFile{data: data, failAt: 100}
	if _, err := probe(ffprobe, f.input()); err == nil || errors.Is(err, ErrNotMedia) || !errors.Is(err, ErrInput) {
		t.Errorf("probe: %v; want ErrInput, not ErrNotMedia", err)
	}
}

// The input's server answers only its own path, only GET and HEAD.
func TestSeekableServerRefusesOthers(t *testing.T) {
	t.Parallel()
	f := &countingFile{data: []byte("0123456789")}
	s, err := serve(f.input(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	root := s.url[:strings.LastIndex(s.url, "/")]
	for _, c := range []struct {
		method, url string
		want        int
	}{
		{"GET", root + "/", http.StatusNotFound},
		{"GET", root + "/guess", http.StatusNotFound},
		{"PUT", s.url, http.StatusMethodNotAllowed},
		{"GET", s.url, http.StatusOK},
	} {
		req, _ := http.NewRequest(c.method, c.url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.url, resp.StatusCode, c.want)
		}
		if c.want == http.StatusOK && string(body) != "0123456789" {
			t.Errorf("body %q", body)
		}
	}
	req, _ := http.NewRequest("GET", s.url, nil)
	req.Header.Set("Range", "bytes=4-6")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != "456" {
		t.Errorf("range: %d %q, want 206 \"456\"", resp.StatusCode, body)
	}
}

// A Seekable input opens no other URL: a playlist served through it that
// names one is refused by the demuxer whitelist, and nothing connects.
func TestSeekableOpensNothingElse(t *testing.T) {
	t.Parallel()
	ffmpeg, ffprobe := testenv.Getenv(t, "FFMPEG_PATH"), testenv.Getenv(t, "FFPROBE_PATH")
	target := ffmpegtest.NewConnCounter(t)
	playlist := []byte("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://" + target.Addr() + "/a.ts\n#EXT-X-ENDLIST\n")
	f := &countingFile{data: playlist}
	if _, err := probe(ffprobe, f.input()); !errors.Is(err, ErrNotMedia) {
		t.Errorf("probe of a playlist: %v, want ErrNotMedia", err)
	}
	if out, _, err := run(Cmd{Path: ffmpeg, Input: f.input(), Output: toMP3}); err == nil || len(out) > 0 {
		t.Errorf("ffmpeg on a playlist: %d bytes, %v; want refused", len(out), err)
	}
	if n := target.ConnsSoFar(t); n != 0 {
		t.Errorf("%d connections to the URL the playlist names; want none", n)
	}
}
