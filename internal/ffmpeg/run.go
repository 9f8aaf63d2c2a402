package ffmpeg

import (
	"bufio"
	"context"
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

	"mp3converter/internal/readahead"
)

// Cmd is one run of ffmpeg, writing to its standard output.
type Cmd struct {
	Path  string // the ffmpeg binary
	Input Input
	// Output are the output options, between the input and the output
	// (standard output): the streams, codecs and format to make, e.g.
	// "-map", "0:a:0", "-c:a", "libmp3lame", "-f", "mp3".
	Output []string
	// Check, when not nil, runs once ffmpeg has exited successfully, before
	// the output's io.EOF is read; its error is returned instead (by Read
	// and Wait), so that an output it refuses never looks complete.
	Check func(Result) error
}

// Args is ffmpeg's command line (without the binary): progress on fd 3,
// the input within the whitelists (see the package comment), the output
// options, the output on standard output.
func (c Cmd) Args() []string { return c.args(c.Input.name) }

// args is Args with input as the input's name (a Seekable input's URL).
func (c Cmd) args(input string) []string {
	args := []string{"-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info", // see report
		"-progress", "pipe:3", "-stats_period", "0.5"}
	args = append(args, inputOptions(c.Input)...)
	args = append(args, "-i", input)
	args = append(args, c.Output...)
	return append(args, "pipe:1")
}

// Result is how far a run got.
type Result struct {
	// Position is the time of output written so far (ffmpeg's -progress
	// out_time): at the end, the length of what it made.
	Position time.Duration
	// Complete: the output was read to its end (Read returned io.EOF, or
	// the failure in its place).
	Complete bool
}

// ErrInput is the failure to read a Pipe or Seekable input (a download that broke):
// ffmpeg is killed before its input ends, so that a partial input never
// ends in a "successful" short output. Wait's error wraps it and the
// reader's error.
var ErrInput = errors.New("read input")

// ExitError is ffmpeg's failure (its exit status, or being killed) with
// the end of its error output.
type ExitError struct {
	Err    error
	Stderr string
}

func (e *ExitError) Error() string {
	if e.Stderr == "" {
		return "ffmpeg: " + e.Err.Error()
	}
	return "ffmpeg: " + e.Err.Error() + ": " + e.Stderr
}

func (e *ExitError) Unwrap() error { return e.Err }

// Process is a running ffmpeg: its standard output is read through Read;
// at the end of it Read waits for ffmpeg and returns its failure (an
// *ExitError) or Check's instead of io.EOF, so that a failed run never
// looks complete to the reader. Read is for one goroutine; Position for
// any; Wait, once the reader has stopped.
type Process struct {
	cmd    *exec.Cmd
	out    *readahead.Reader // stdout, drained ahead of the reader
	stderr *report
	check  func(Result) error

	outTime  atomic.Int64 // µs of output written so far (from -progress)
	progDone chan struct{}
	errDone  chan struct{} // closed when stderr has been read to its end

	feedDone chan struct{} // closed when the stdin feeder has returned
	feedErr  error         // set before feedDone is closed
	server   *server       // a Seekable input's (nil: none)

	once    sync.Once
	waitErr error // ffmpeg's exit
	failed  error // what Read returned instead of io.EOF
	ended   bool  // Read reached the end of the output
}

// Start starts c; ffmpeg is killed when ctx ends. The caller reads the output with Read, and in the end calls Wait.
func Start(ctx context.Context, c Cmd) (*Process, error) {
	p := &Process{stderr: newReport(), check: c.Check,
		progDone: make(chan struct{}), errDone: make(chan struct{}), feedDone: make(chan struct{})}
	input := c.Input.name
	started := make(chan struct{}) // closed once p.cmd.Process is set
	if c.Input.open != nil {
		srv, err := serve(c.Input, func() {
			select {
			case <-started:
				_ = p.cmd.Process.Kill()
			default:
			}
		})
		if err != nil {
			return nil, err
		}
		p.server, input = srv, srv.url
	}
	cmd := exec.CommandContext(ctx, c.Path, c.args(input)...)
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	p.cmd = cmd
	// stderr through a pipe of our own, read to its end (see readStderr).
	er, ew, err := os.Pipe()
	if err != nil {
		p.closeServer()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	cmd.Stderr = ew
	pr, pw, err := os.Pipe()
	if err != nil {
		er.Close()
		ew.Close()
		p.closeServer()
		return nil, fmt.Errorf("progress pipe: %w", err)
	}
	fail := func(err error) (*Process, error) {
		er.Close()
		ew.Close()
		pr.Close()
		pw.Close()
		p.closeServer()
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{pw} // fd 3
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fail(fmt.Errorf("ffmpeg stdout: %w", err))
	}
	var stdin io.WriteCloser
	src := c.Input.stdin
	if src != nil {
		if stdin, err = cmd.StdinPipe(); err != nil {
			return fail(fmt.Errorf("ffmpeg stdin: %w", err))
		}
	}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("start ffmpeg: %w", err))
	}
	close(started)
	pw.Close() // the child has its copy: EOF when it exits
	ew.Close()
	go p.readProgress(pr)
	go p.readStderr(er)
	p.out = readahead.New(stdout, 8, 256<<10)
	if src != nil {
		go p.feed(src, stdin)
	} else {
		close(p.feedDone)
	}
	return p, nil
}

// feed copies src to ffmpeg's stdin. A read error (the input could not be
// downloaded) kills ffmpeg before its input is closed, so that a partial
// input never ends in a "successful" short output; the error is kept in
// feedErr. A write error means ffmpeg stopped reading (it exited): its
// exit status tells why.
func (p *Process) feed(src io.Reader, stdin io.WriteCloser) {
	defer close(p.feedDone)
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
			p.feedErr = fmt.Errorf("%w: %w", ErrInput, err)
			_ = p.cmd.Process.Kill()
			return
		}
	}
}

// readProgress follows -progress output ("key=value" lines).
func (p *Process) readProgress(pr *os.File) {
	defer close(p.progDone)
	defer pr.Close()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok || k != "out_time_us" {
			continue
		}
		if us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && us >= 0 {
			p.outTime.Store(us)
		}
	}
	_, _ = io.Copy(io.Discard, pr) // a too-long line: keep the pipe drained
}

// readStderr feeds ffmpeg's stderr to the report, and ends it at EOF (ffmpeg
// has exited): the input's dump ends when every line before the exit has
// been read, whatever reached us first on the other pipes.
func (p *Process) readStderr(r *os.File) {
	defer close(p.errDone)
	defer r.Close()
	_, _ = io.Copy(p.stderr, r)
	p.stderr.finish()
}

// Input waits until ffmpeg has opened its input and said what it holds
// (its dump of the input, which ffmpeg ends before any output: see
// report), or has exited, or ctx ends; it returns what the dump told, with ok false when
// there was none. The Info has no stream durations: Duration is the
// container's.
func (p *Process) Input(ctx context.Context) (info Info, ok bool) {
	select {
	case <-p.stderr.ended:
	case <-ctx.Done():
	}
	return p.stderr.input()
}

// Position is the time of output written so far.
func (p *Process) Position() time.Duration {
	return time.Duration(p.outTime.Load()) * time.Microsecond
}

// Read reads the output; see Process.
func (p *Process) Read(b []byte) (int, error) {
	if p.ended {
		if p.failed != nil {
			return 0, p.failed
		}
		return 0, io.EOF
	}
	n, err := p.out.Read(b)
	if errors.Is(err, io.EOF) {
		p.ended = true
		if werr := p.wait(); werr != nil {
			p.failed = werr
		} else if p.server != nil && p.server.Err() != nil {
			p.failed = p.server.Err() // ffmpeg ended on a cut input
		} else if p.check != nil {
			p.failed = p.check(Result{Position: p.Position(), Complete: true})
		}
		if p.failed != nil {
			return n, p.failed
		}
	}
	return n, err
}

// Wait waits for ffmpeg to exit (the caller has stopped reading: cancel
// its context to kill it first) and for its input to be fed. Its error
// wraps ErrInput if the input failed; else it is what Read returned in
// place of io.EOF if Read got there (an *ExitError or Check's error); else
// ffmpeg's *ExitError, if any.
func (p *Process) Wait() (Result, error) {
	werr := p.wait()
	<-p.feedDone
	res := Result{Position: p.Position(), Complete: p.ended}
	switch {
	case p.feedErr != nil:
		return res, p.feedErr
	case p.server != nil && p.server.Err() != nil:
		return res, p.server.Err()
	case p.ended && p.failed != nil:
		return res, p.failed
	}
	return res, werr
}

// wait waits for ffmpeg to exit (once) and for its progress output.
func (p *Process) wait() error {
	p.once.Do(func() {
		err := p.cmd.Wait() // closes stdout: a read-ahead still reading stops
		p.out.Close()
		<-p.progDone
		<-p.errDone
		p.closeServer()
		if err != nil {
			p.waitErr = &ExitError{Err: err, Stderr: p.stderr.String()}
		}
	})
	return p.waitErr
}

func (p *Process) closeServer() {
	if p.server != nil {
		p.server.Close()
	}
}

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
