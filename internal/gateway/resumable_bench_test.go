package gateway_test

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkResumableCut measures what a broken connection costs a
// resumable upload: a 1 GiB upload is cut after 90% of it was sent in one
// PATCH, resumed from the server's offset (HEAD) and completed. It reports
//   - resent_bytes: the bytes sent before the cut that the server did not
//     keep, which the client has to send again;
//   - resent_ratio: resent_bytes against what a restarted POST /upload
//     sends again, all 0.9 GiB sent before the cut. That baseline is
//     arithmetic, not measured: a one-shot upload that breaks keeps
//     nothing, so its retry sends every byte again;
//   - cut_MBps: the rate of the PATCH that was cut, from its first byte
//     to the gateway closing the connection (everything that came is
//     stored by then);
//   - resume_s: from the HEAD to the last PATCH's answer (the last 10%
//     stored and the conversion queued).
//
// The bytes are made as they are sent, so the client never holds more
// than a buffer of them. Run with
// `go test -run '^$' -bench ResumableCut -benchtime=1x ./internal/gateway/`.
//
// Two cuts: "close", the client closing the connection cleanly (every
// byte it sent arrives), and "reset", the connection reset (SO_LINGER 0:
// what the kernels still held in their buffers is lost, as when a phone
// drops off the network mid-send).
func BenchmarkResumableCut(b *testing.B) {
	for _, reset := range []bool{false, true} {
		name := "close"
		if reset {
			name = "reset"
		}
		b.Run(name, func(b *testing.B) { benchResumableCut(b, reset) })
	}
}

func benchResumableCut(b *testing.B, reset bool) {
	const size = 1 << 30
	const cut = size * 9 / 10
	e := newEnv(b, envOptions{maxUpload: size})
	tok, err := e.tokens.Issue("alice@example.com", false)
	if err != nil {
		b.Fatal(err)
	}
	c := &tusClient{t: b, url: e.url, tok: tok}
	var resent, cutTook, resumeTook float64
	for b.Loop() {
		path := c.create(size, tusMetadata("filename", "big.mp4", "filetype", "video/mp4"))
		start := time.Now()
		streamCut(b, e.url, tok, path, cut, size, reset)
		cutTook += time.Since(start).Seconds()

		start = time.Now()
		offset := c.offset(path)
		if offset > cut {
			b.Fatalf("after the cut the server has %d bytes, more than the %d sent", offset, cut)
		}
		r := c.do("PATCH", path, map[string]string{"Upload-Offset": strconv.FormatInt(offset, 10),
			"Content-Type": "application/offset+octet-stream"}, &pattern{off: offset, end: size})
		if r.status != 204 || r.header.Get("Upload-Offset") != strconv.Itoa(size) {
			b.Fatalf("last PATCH from %d: %d %q, Upload-Offset %q", offset, r.status, r.body, r.header.Get("Upload-Offset"))
		}
		resumeTook += time.Since(start).Seconds()
		resent += float64(cut - offset)
	}
	n := float64(b.N)
	b.ReportMetric(resent/n, "resent_bytes")
	b.ReportMetric(resent/n/cut, "resent_ratio")
	b.ReportMetric(cut*n/cutTook/1e6, "cut_MBps")
	b.ReportMetric(resumeTook/n, "resume_s")
}

// streamCut sends a PATCH of an empty upload that announces all of its
// size bytes, sends the first sent of them, then closes the client's side
// of the connection, and waits for the gateway to close its side: the
// gateway is done with the request then. With reset it resets the
// connection instead and returns at once; the HEAD that follows waits for
// the upload's lock, which the gateway holds until it stored what it read.
func streamCut(b *testing.B, url, tok, path string, sent, size int64, reset bool) {
	b.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nTus-Resumable: 1.0.0\r\n"+
		"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\nContent-Length: %d\r\n\r\n",
		path, conn.RemoteAddr(), tok, size)
	if _, err := io.Copy(conn, &pattern{end: sent}); err != nil {
		b.Fatalf("cut PATCH: %v", err)
	}
	if reset {
		_ = conn.(*net.TCPConn).SetLinger(0)
		conn.Close() // a reset: the gateway's read fails at once
		return
	}
	conn.(*net.TCPConn).CloseWrite()
	if _, err := io.Copy(io.Discard, conn); err != nil {
		b.Fatalf("cut PATCH: waiting for the gateway to close: %v", err)
	}
}

// pattern reads the bytes [off, end) of a stream in which byte i is
// byte(i*7 + i>>11): the same bytes every time, made as they are read.
type pattern struct{ off, end int64 }

func (p *pattern) Read(buf []byte) (int, error) {
	if p.off >= p.end {
		return 0, io.EOF
	}
	buf = buf[:min(int64(len(buf)), p.end-p.off)]
	for i := range buf {
		x := p.off + int64(i)
		buf[i] = byte(x*7 + x>>11)
	}
	p.off += int64(len(buf))
	return len(buf), nil
}
