package ffmpeg

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Seekable is a file that ffmpeg reads wherever it needs to (an MP4's index
// at its end, then only the samples of the track it converts), without a
// local copy: each run serves it over HTTP on a loopback port of its own,
// under a random path, to that one process; every HTTP request (a Range
// request after each seek) reads from a new reader of open. size is the
// file's length.
func Seekable(open func() io.ReadSeeker, size int64) Input {
	return Input{name: "http", open: open, size: size}
}

// seekBuffer is the socket buffer on both sides of a Seekable input's
// connections. The bytes a request has sent beyond what ffmpeg reads
// before it seeks again are read from storage for nothing; the kernel's
// default buffers on loopback (megabytes) would make each seek cost that
// much. It is also the distance up to which ffmpeg reads through a gap
// instead of seeking (its short-seek threshold over TCP is the socket's
// receive buffer).
const seekBuffer = 64 << 10

// Options for ffmpeg's http protocol reading a Seekable input: the server
// takes Range requests (seekable), never sends ICY metadata, and a cut is
// a failure, not a reason to reconnect.
var seekableOptions = []string{"-seekable", "1", "-icy", "0", "-reconnect", "0",
	"-recv_buffer_size", fmt.Sprint(seekBuffer), "-rw_timeout", "60000000"}

// server serves one Seekable input for one run of ffprobe or ffmpeg.
type server struct {
	url  string
	ln   net.Listener
	srv  *http.Server
	kill func() // called once on the first read error (nil: none)

	mu  sync.Mutex
	err error // the first read error
}

// serve starts the server of in; kill, when not nil, is called on the
// first read error (so that ffmpeg never ends a partial input with a
// "successful" short output).
func serve(in Input, kill func()) (*server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for ffmpeg's input: %w", err)
	}
	var token [16]byte
	_, _ = rand.Read(token[:])
	path := "/" + hex.EncodeToString(token[:])
	s := &server{ln: smallBuffers{ln}, kill: kill, url: "http://" + ln.Addr().String() + path}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != path {
				http.NotFound(w, r)
				return
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Allow", "GET, HEAD")
				http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			http.ServeContent(w, r, "", time.Time{}, &recording{rs: in.open(), size: in.size, s: s})
		})}
	go func() { _ = s.srv.Serve(s.ln) }()
	return s, nil
}

// failed records the first read error and kills the reader.
func (s *server) failed(err error) {
	s.mu.Lock()
	first := s.err == nil
	if first {
		s.err = fmt.Errorf("%w: %w", ErrInput, err)
	}
	s.mu.Unlock()
	if first && s.kill != nil {
		s.kill()
	}
}

// Err is the first read error (wrapping ErrInput), or nil.
func (s *server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the server and closes its connections.
func (s *server) Close() { _ = s.srv.Close() }

// recording is one request's reader: it reports read errors to the server
// (ServeContent only stops sending) and knows the size without seeking.
type recording struct {
	rs   io.ReadSeeker
	size int64
	s    *server
}

func (r *recording) Read(p []byte) (int, error) {
	n, err := r.rs.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		r.s.failed(err)
	}
	return n, err
}

func (r *recording) Seek(offset int64, whence int) (int64, error) {
	if whence == io.SeekEnd && offset == 0 {
		return r.size, nil // ServeContent asks the size this way
	}
	return r.rs.Seek(offset, whence)
}

// smallBuffers sets seekBuffer as the send buffer of accepted connections.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(seekBuffer)
	}
	return c, err
}
