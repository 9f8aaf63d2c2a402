package converter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// probeResult is what ffprobe tells about an input.
type probeResult struct {
	Format   string
	Duration float64 // seconds of the container, 0 if unknown
	Audio    *audioStream
}

// audioStream is the first audio stream, the one -map 0:a:0 converts.
type audioStream struct {
	Codec      string
	BitRate    int     // bits per second, 0 if unknown
	Duration   float64 // seconds, 0 if unknown
	SampleRate int
	Channels   int
}

// duration is the audio's duration if known, else the container's.
func (p probeResult) duration() float64 {
	if p.Audio != nil && p.Audio.Duration > 0 {
		return p.Audio.Duration
	}
	return p.Duration
}

// errNotMedia is ffprobe refusing the input.
var errNotMedia = errors.New("ffprobe cannot read the input")

// probe runs ffprobe on input (fileInput(path), or "pipe:0" with stdin),
// limited to inputOptions' protocols and demuxers. An input ffprobe refuses
// gives an error wrapping errNotMedia; anything else (ffprobe missing,
// killed, timed out) is a plain error.
func probe(ctx context.Context, ffprobe, input string, stdin io.Reader, timeout time.Duration) (probeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append([]string{"-v", "error", "-hide_banner",
		"-show_entries", "format=format_name,duration:stream=index,codec_type,codec_name,bit_rate,duration,sample_rate,channels",
		"-of", "json"}, inputOptions(input)...)
	cmd := exec.CommandContext(ctx, ffprobe, append(args, "-i", input)...)
	cmd.Stdin = stdin
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 2048}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return probeResult{}, fmt.Errorf("ffprobe: %w", ctx.Err())
	case errors.As(err, &ee):
		return probeResult{}, fmt.Errorf("%w: %v: %s", errNotMedia, err, stderr.String())
	case err != nil:
		return probeResult{}, fmt.Errorf("ffprobe: %w", err)
	}
	var out struct {
		Streams []struct {
			CodecType  string `json:"codec_type"`
			CodecName  string `json:"codec_name"`
			BitRate    string `json:"bit_rate"`
			Duration   string `json:"duration"`
			SampleRate string `json:"sample_rate"`
			Channels   int    `json:"channels"`
		} `json:"streams"`
		Format struct {
			Name     string `json:"format_name"`
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return probeResult{}, fmt.Errorf("ffprobe output: %w", err)
	}
	if len(out.Streams) == 0 {
		return probeResult{}, fmt.Errorf("%w: no streams (format %q)", errNotMedia, out.Format.Name)
	}
	res := probeResult{Format: out.Format.Name, Duration: parseFloat(out.Format.Duration)}
	for _, st := range out.Streams {
		if st.CodecType != "audio" {
			continue
		}
		res.Audio = &audioStream{
			Codec:      st.CodecName,
			BitRate:    int(parseFloat(st.BitRate)),
			Duration:   parseFloat(st.Duration),
			SampleRate: int(parseFloat(st.SampleRate)),
			Channels:   st.Channels,
		}
		break
	}
	return res, nil
}

func parseFloat(s string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 {
		return 0
	}
	return f
}

// ffmpegArgs is the command line converting input's first audio stream to
// MP3 on stdout, with progress on fd 3; the input is limited to
// inputOptions' protocols and demuxers.
func ffmpegArgs(input string, a *audioStream, bitrate string, maxDur time.Duration) (args []string, copied bool) {
	args = []string{"-nostdin", "-hide_banner", "-nostats", "-loglevel", "error",
		"-progress", "pipe:3", "-stats_period", "0.5"}
	args = append(args, inputOptions(input)...)
	args = append(args, "-i", input,
		"-map", "0:a:0", "-vn", "-sn", "-dn")
	if a.Codec == "mp3" {
		args = append(args, "-c:a", "copy")
		copied = true
	} else {
		args = append(args, "-c:a", "libmp3lame", "-b:a", bitrate)
		if a.SampleRate > 48000 {
			args = append(args, "-ar", "48000") // the highest rate MP3 has
		}
		if a.Channels > 2 {
			args = append(args, "-ac", "2") // MP3 is mono or stereo
		}
	}
	args = append(args, "-t", strconv.FormatFloat(maxDur.Seconds(), 'f', 3, 64), "-f", "mp3", "pipe:1")
	return args, copied
}

// ffmpegRun is one ffmpeg child: its stdout is the MP3, read through
// Read; at the end of it Read waits for ffmpeg and returns its failure
// instead of io.EOF, so that a failed conversion never looks complete to
// the upload reading it.
type ffmpegRun struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	out    *readAhead // stdout, drained ahead of the upload's batches
	stderr *tailBuffer

	outTime  atomic.Int64 // µs of audio written so far (from -progress)
	progDone chan struct{}

	feedDone chan struct{} // closed when the stdin feeder has returned
	feedErr  atomic.Pointer[error]

	// check runs after a successful exit, before Read reports io.EOF; its
	// error is returned instead.
	check func() error

	once    sync.Once
	waitErr error // ffmpeg's exit
	failed  error // what Read returned instead of io.EOF
	ended   bool
}

// startFFmpeg starts ffmpeg with args; src, when not nil, is fed to its
// standard input. It is killed when ctx ends. The caller reads the MP3 with
// Read, and in the end calls wait and waits for feedDone.
func startFFmpeg(ctx context.Context, ffmpeg string, args []string, src io.Reader) (*ffmpegRun, error) {
	cmd := exec.CommandContext(ctx, ffmpeg, args...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	r := &ffmpegRun{cmd: cmd, stderr: &tailBuffer{max: 4096},
		progDone: make(chan struct{}), feedDone: make(chan struct{})}
	cmd.Stderr = r.stderr
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("progress pipe: %w", err)
	}
	fail := func(err error) (*ffmpegRun, error) {
		pr.Close()
		pw.Close()
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{pw} // fd 3
	if r.stdout, err = cmd.StdoutPipe(); err != nil {
		return fail(fmt.Errorf("ffmpeg stdout: %w", err))
	}
	var stdin io.WriteCloser
	if src != nil {
		if stdin, err = cmd.StdinPipe(); err != nil {
			return fail(fmt.Errorf("ffmpeg stdin: %w", err))
		}
	}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start ffmpeg: %w", err))
	}
	pw.Close() // the child has its copy: EOF when it exits
	go r.readProgress(pr)
	r.out = newReadAhead(r.stdout, 8, 256<<10)
	if src != nil {
		go r.feed(src, stdin)
	} else {
		close(r.feedDone)
	}
	return r, nil
}

// feed copies src to ffmpeg's stdin. A read error (the video could not be
// downloaded) kills ffmpeg before its input is closed, so that a partial
// input never ends in a "successful" short MP3; the error is kept in
// feedErr. A write error means ffmpeg stopped reading (it exited): its exit
// status tells why.
func (r *ffmpegRun) feed(src io.Reader, stdin io.WriteCloser) {
	defer close(r.feedDone)
	defer stdin.Close()
	buf := make([]byte, 256<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := stdin.Write(buf[:n]); werr != nil {
				return
			}
		}
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			err = fmt.Errorf("read video: %w", err)
			r.feedErr.Store(&err)
			_ = r.cmd.Process.Kill()
			return
		}
	}
}

// feedError is the error that stopped feeding stdin, or nil.
func (r *ffmpegRun) feedError() error {
	if p := r.feedErr.Load(); p != nil {
		return *p
	}
	return nil
}

// readProgress follows -progress output ("key=value" lines).
func (r *ffmpegRun) readProgress(pr *os.File) {
	defer close(r.progDone)
	defer pr.Close()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || k != "out_time_us" {
			continue
		}
		if us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && us >= 0 {
			r.outTime.Store(us)
		}
	}
	_, _ = io.Copy(io.Discard, pr) // a too-long line: keep the pipe drained
}

// Read reads the MP3; see ffmpegRun.
func (r *ffmpegRun) Read(p []byte) (int, error) {
	if r.ended {
		if r.failed != nil {
			return 0, r.failed
		}
		return 0, io.EOF
	}
	n, err := r.out.Read(p)
	if errors.Is(err, io.EOF) {
		r.ended = true
		if werr := r.wait(); werr != nil {
			r.failed = werr
		} else if r.check != nil {
			r.failed = r.check()
		}
		if r.failed != nil {
			return n, r.failed
		}
	}
	return n, err
}

// wait waits for ffmpeg to exit (once) and for its progress output.
func (r *ffmpegRun) wait() error {
	r.once.Do(func() {
		err := r.cmd.Wait() // closes stdout: a read-ahead still reading stops
		r.out.Close()
		<-r.progDone
		if err != nil {
			r.waitErr = &ffmpegError{err: err, stderr: r.stderr.String()}
		}
	})
	return r.waitErr
}

// ffmpegError is ffmpeg's failure with the end of its error output.
type ffmpegError struct {
	err    error
	stderr string
}

func (e *ffmpegError) Error() string {
	if e.stderr == "" {
		return "ffmpeg: " + e.err.Error()
	}
	return "ffmpeg: " + e.err.Error() + ": " + e.stderr
}

func (e *ffmpegError) Unwrap() error { return e.err }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(strings.ToValidUTF8(string(t.b), "?"))
}
