package ffmpeg

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
)

// ffmpeg runs with -loglevel level+info: every line of its standard error
// starts with its level ("[info] ", "[error] ", after the "[demuxer @
// 0x…] " of a message that has one). The info lines that have no context
// are ffmpeg's own, among them the dump of the input it opened ("Input #0,
// mov,mp4,… from '…':", "  Duration: …", "  Stream #0:1(und): Audio: aac
// …"): a report reads what the input holds from it, so that no separate
// ffprobe run has to find it out first. The error lines are kept for
// ExitError, as -loglevel error would show them.

// maxLine bounds one line of ffmpeg's standard error (the rest of a longer
// one is dropped).
const maxLine = 1024

// report is a run's standard error, parsed as it is written.
type report struct {
	errs tailBuffer

	mu      sync.Mutex
	partial []byte
	long    bool // partial is cut: drop the rest of the line
	info    Info
	seen    bool // the "Input #0" line came
	done    bool
	ended   chan struct{} // closed once the input's dump is over
}

func newReport() *report {
	return &report{errs: tailBuffer{max: 4096}, ended: make(chan struct{})}
}

func (r *report) Write(p []byte) (int, error) {
	n := len(p)
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(p) > 0 {
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			r.add(p)
			break
		}
		r.add(p[:i])
		r.line(string(r.partial))
		r.partial, r.long = r.partial[:0], false
		p = p[i+1:]
	}
	return n, nil
}

func (r *report) add(p []byte) {
	if r.long {
		return
	}
	if room := maxLine - len(r.partial); len(p) > room {
		p, r.long = p[:room], true
	}
	r.partial = append(r.partial, p...)
}

// line takes one line (r.mu held).
func (r *report) line(s string) {
	if s == "" {
		return
	}
	ctx, level, msg := splitLine(s)
	switch level {
	case "info", "verbose", "debug", "trace", "warning":
		if level == "info" && ctx == "" {
			r.dump(msg)
		}
	default: // error, fatal, panic, or a line without a level
		if ctx != "" {
			msg = ctx + " " + msg
		}
		_, _ = r.errs.Write([]byte(msg + "\n"))
	}
}

// splitLine splits "[ctx @ 0x…] [level] msg" (both prefixes optional).
func splitLine(s string) (ctx, level, msg string) {
	if strings.HasPrefix(s, "[") && strings.Contains(s, " @ ") {
		if i := strings.Index(s, "] "); i > 0 && strings.Contains(s[:i], " @ ") {
			ctx, s = s[:i+1], s[i+2:]
		}
	}
	if strings.HasPrefix(s, "[") {
		if i := strings.Index(s, "] "); i > 0 && !strings.ContainsAny(s[1:i], " []") {
			return ctx, s[1:i], s[i+2:]
		}
	}
	return ctx, "", s
}

// dump reads a line of the input's dump: the format, the duration and the
// first audio stream (the one -map 0:a:0 converts). Its first line at the
// left margin after "Input #0" ("Stream mapping:", "Output #0, …") ends it.
func (r *report) dump(msg string) {
	if r.done {
		return
	}
	if rest, ok := strings.CutPrefix(msg, "Input #0, "); ok && !r.seen {
		r.seen = true
		if i := strings.Index(rest, ", from '"); i >= 0 {
			r.info.Format = rest[:i]
		}
		return
	}
	if !r.seen {
		return
	}
	if !strings.HasPrefix(msg, " ") {
		r.end()
		return
	}
	if rest, ok := strings.CutPrefix(msg, "  Duration: "); ok {
		d, _, _ := strings.Cut(rest, ",")
		r.info.Duration = clockSeconds(d)
		return
	}
	// "  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D),
	// 44100 Hz, stereo, fltp, 128 kb/s (default)"; the stream's metadata
	// lines below it are indented further.
	rest, ok := strings.CutPrefix(msg, "  Stream #0:")
	if !ok || r.info.Audio != nil {
		return
	}
	_, desc, ok := strings.Cut(rest, ": Audio: ")
	if !ok {
		return
	}
	fields := strings.Split(desc, ", ")
	codec, _, _ := strings.Cut(fields[0], " ")
	a := &Audio{Codec: codec}
	for _, f := range fields[1:] {
		f, _, _ = strings.Cut(f, " (")
		switch {
		case strings.HasSuffix(f, " Hz"):
			a.SampleRate, _ = strconv.Atoi(strings.TrimSuffix(f, " Hz"))
		case f == "mono":
			a.Channels = 1
		case f == "stereo":
			a.Channels = 2
		case strings.HasSuffix(f, " kb/s"):
			kbps, _ := strconv.Atoi(strings.TrimSuffix(f, " kb/s"))
			a.BitRate = kbps * 1000
		}
	}
	r.info.Audio = a
}

// end marks the dump as over (r.mu held): at its end, or when ffmpeg
// exits. Not at the first byte of output: ffmpeg writes its whole dump, and
// "Stream mapping:" after it, before any output, but the output can reach
// us before the lines on stderr are read, which once ended the dump empty
// (a truncated file then passed unchecked, its duration unknown).
func (r *report) end() {
	if !r.done {
		r.done = true
		close(r.ended)
	}
}

// input is what the dump told: ok is false when ffmpeg printed none (it
// could not open the input).
func (r *report) input() (Info, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.info, r.seen
}

// finish takes a last line without its newline and ends the dump (ffmpeg
// has exited).
func (r *report) finish() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.partial) > 0 {
		r.line(string(r.partial))
		r.partial = r.partial[:0]
	}
	r.end()
}

// String is the end of the error lines.
func (r *report) String() string { return r.errs.String() }

// clockSeconds parses ffmpeg's "HH:MM:SS.cc"; 0 if it is not one ("N/A").
func clockSeconds(s string) float64 {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) != 3 {
		return 0
	}
	h, err1 := strconv.Atoi(parts[0])
	m, err2 := strconv.Atoi(parts[1])
	sec, err3 := strconv.ParseFloat(parts[2], 64)
	if err1 != nil || err2 != nil || err3 != nil || h < 0 || m < 0 || sec < 0 {
		return 0
	}
	return float64(h*3600+m*60) + sec
}
