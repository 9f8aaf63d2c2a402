// Package ffmpeg runs ffprobe and ffmpeg on untrusted media. They are
// killed when their context ends (on Linux they run in a process group of
// their own, and die with the process that started them), and they read an
// input only from a local file, a pipe, or the loopback HTTP server of a
// Seekable input, through the demuxer of a common media container
// (-protocol_whitelist, -format_whitelist): never another URL, never a
// playlist or script that names other files. Probe tells what an
// input holds; Start runs a conversion whose output is read from the
// returned Process. SniffFaststart and ScriptKind look at the start of an
// input before either runs.
package ffmpeg

import "io"

// Input is what ffprobe or ffmpeg reads: a local file (File), a stream
// fed to its standard input (Pipe), or a stored file it may seek in
// (Seekable).
type Input struct {
	name  string    // the input as ffmpeg names it: "file:<path>", "pipe:0", or "http" (Seekable: the URL is per run)
	stdin io.Reader // for pipe:0
	open  func() io.ReadSeeker
	size  int64
}

// File is the local file path, named with the "file:" prefix so that no
// part of the path is read as a protocol.
func File(path string) Input { return Input{name: "file:" + path} }

// Pipe is r, fed to the process's standard input.
func Pipe(r io.Reader) Input { return Input{name: "pipe:0", stdin: r} }
