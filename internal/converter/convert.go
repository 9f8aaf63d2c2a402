package converter

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"mp3converter/internal/gridfs"
)

// maxPrefix bounds the bytes read ahead to find an MP4's index (and held in
// memory for ffprobe): a faststart file whose moov box ends later than this
// goes through a temporary file instead.
const maxPrefix = 8 << 20

// convert turns the video read from src into the MP3 file j.id of the mp3s
// bucket. It returns gridfs.ErrExists (wrapped) when that file exists, a
// *permanentError when the input cannot be converted, and any other error
// when a retry may succeed.
func (s *Service) convert(ctx context.Context, j *job, src io.Reader, info gridfs.FileInfo, name string) (gridfs.FileInfo, error) {
	var (
		prefix     []byte
		streamable bool
		err        error
		t          = time.Now()
	)
	// Playlists and scripts never reach ffmpeg (which would open what they
	// name); its whitelists (inputOptions) are the second line.
	if src, err = refuseScripts(src); err != nil {
		return gridfs.FileInfo{}, err
	}
	if s.opt.StreamFaststart {
		if prefix, streamable, err = sniffFaststart(src, maxPrefix); err != nil {
			return gridfs.FileInfo{}, fmt.Errorf("read video: %w", err)
		}
	}
	var (
		input = "pipe:0"
		stdin io.Reader
		pr    probeResult
		mode  = "stream"
	)
	if streamable {
		pr, err = probe(ctx, s.opt.FFprobePath, "pipe:0", bytes.NewReader(prefix), s.opt.ProbeTimeout)
		t = j.lap("probe", t)
		switch {
		case err == nil:
			ra := newReadAhead(io.MultiReader(bytes.NewReader(prefix), src), 16, 256<<10)
			defer ra.Close()
			stdin = ra
		case errors.Is(err, errNotMedia):
			j.log.Debug("ffprobe refused the index alone; using a temporary file", "err", err)
		default:
			return gridfs.FileInfo{}, err
		}
	}
	if stdin == nil {
		mode = "file"
		tmp, err := s.download(ctx, io.MultiReader(bytes.NewReader(prefix), src), info.Length)
		prefix = nil
		t = j.lap("download", t)
		if err != nil {
			return gridfs.FileInfo{}, err
		}
		defer func() {
			if err := tmp.remove(); err != nil {
				j.log.Warn("remove temporary file", "path", tmp.path, "err", err)
			}
		}()
		input = fileInput(tmp.path)
		pr, err = probe(ctx, s.opt.FFprobePath, input, nil, s.opt.ProbeTimeout)
		t = j.lap("probe", t)
		if err != nil {
			if errors.Is(err, errNotMedia) {
				return gridfs.FileInfo{}, permanent("the file is not a video or audio file ffmpeg can read", err)
			}
			return gridfs.FileInfo{}, err
		}
	}
	if pr.Audio == nil {
		return gridfs.FileInfo{}, permanent("the video has no audio track", fmt.Errorf("format %s", pr.Format))
	}
	dur, maxDur := pr.duration(), s.opt.MaxDuration.Seconds()
	if dur > maxDur {
		return gridfs.FileInfo{}, permanent(fmt.Sprintf("the video is longer than the %s limit", durationText(s.opt.MaxDuration)),
			fmt.Errorf("%.1f s of audio", dur))
	}

	args, copied := ffmpegArgs(input, pr.Audio, s.opt.Bitrate, s.opt.MaxDuration)
	meta := mp3Meta{Owner: j.owner(), VideoFID: j.fid(), Filename: name,
		Duration: math.Round(dur*1000) / 1000, Bitrate: s.opt.BitrateBPS, Codec: pr.Audio.Codec, Copied: copied}
	if copied {
		meta.Bitrate = pr.Audio.BitRate
	}
	j.log.Info("ffmpeg starting", "mode", mode, "format", pr.Format, "codec", pr.Audio.Codec,
		"copy", copied, "duration_s", meta.Duration)

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run, err := startFFmpeg(cctx, s.opt.FFmpegPath, args, stdin)
	if err != nil {
		return gridfs.FileInfo{}, err
	}
	run.check = func() error {
		got := float64(run.outTime.Load()) / 1e6
		switch {
		case dur <= 0 && got >= maxDur-0.5:
			// Unknown duration: -t cut it at the limit.
			return permanent(fmt.Sprintf("the video is longer than the %s limit", durationText(s.opt.MaxDuration)),
				fmt.Errorf("conversion reached %.1f s", got))
		case dur > 0 && got < 0.9*dur && dur-got > 1:
			return permanent("the file is damaged or truncated",
				fmt.Errorf("only %.1f of %.1f s of audio could be decoded", got, dur))
		}
		return nil
	}
	stopProgress := s.trackProgress(cctx, j, run, dur)
	up, uerr := s.d.MP3s.Upload(cctx, name, run, meta, gridfs.UploadOptions{ID: j.id, Writer: j.writer, Supersede: j.supersede})
	cancel() // ffmpeg is killed if the upload stopped reading early
	werr := run.wait()
	<-run.feedDone
	stopProgress()
	j.lap("convert", t)

	var pe *permanentError
	switch {
	case run.feedError() != nil:
		return gridfs.FileInfo{}, run.feedError()
	case uerr == nil:
		return up, nil
	case errors.As(run.failed, &pe):
		return gridfs.FileInfo{}, pe
	case run.ended && werr != nil && ctx.Err() == nil:
		// ffmpeg failed on its own (not killed by us): the input is bad.
		return gridfs.FileInfo{}, permanent("the audio could not be decoded (the file is damaged or in a format ffmpeg cannot convert)", werr)
	case run.ended && werr != nil:
		return gridfs.FileInfo{}, fmt.Errorf("conversion interrupted: %w (%v)", ctx.Err(), werr)
	}
	return gridfs.FileInfo{}, fmt.Errorf("store mp3: %w", uerr)
}

// trackProgress updates the job's percentage from ffmpeg's position, at
// most every ProgressInterval, in the background (a slow database never
// slows ffmpeg down). The returned func stops it.
func (s *Service) trackProgress(ctx context.Context, j *job, run *ffmpegRun, dur float64) (stop func()) {
	if dur <= 0 {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(s.opt.ProgressInterval)
		defer t.Stop()
		last := 0
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pct := min(int(float64(run.outTime.Load())/1e6/dur*100), 99)
			if pct <= last {
				continue
			}
			// Not cancelled with ctx: an update the driver abandons may still
			// be applied by the server after Done (FerretDB checks the
			// status guard and writes in two steps), leaving a finished
			// job "converting". stop waits for it instead.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			err := s.d.Jobs.Progress(uctx, j.fid(), pct)
			cancel()
			if err != nil {
				j.log.Debug("progress update failed", "err", err)
				continue
			}
			last = pct
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// sniffFaststart reads the start of r to tell whether it is an MP4/MOV
// (ISO base media file) whose moov box, the index, comes before its mdat
// box, the media data: such a file can be converted from a pipe. It reads
// past the end of moov (at most limit bytes in all) and returns the bytes
// read, which the caller must replay before the rest of r.
func sniffFaststart(r io.Reader, limit int) (prefix []byte, ok bool, err error) {
	buf := make([]byte, 0, 64<<10)
	// fill reads until buf holds n bytes; false if r ends first or n is
	// beyond limit.
	fill := func(n int64) (bool, error) {
		if n > int64(limit) {
			return false, nil
		}
		for int64(len(buf)) < n {
			if len(buf) == cap(buf) {
				nb := make([]byte, len(buf), min(max(2*cap(buf), int(n)), limit))
				copy(nb, buf)
				buf = nb
			}
			k, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+k]
			if errors.Is(err, io.EOF) {
				return int64(len(buf)) >= n, nil
			}
			if err != nil {
				return false, err
			}
		}
		return true, nil
	}
	var off int64
	for i := 0; i < 32; i++ { // top-level boxes before moov: ftyp, free, wide, …
		if ok, err := fill(off + 16); err != nil || !ok {
			return buf, false, err // a read error, or too little left to tell
		}
		size := int64(binary.BigEndian.Uint32(buf[off:]))
		typ := string(buf[off+4 : off+8])
		hdr := int64(8)
		if size == 1 {
			size, hdr = int64(binary.BigEndian.Uint64(buf[off+8:])), 16
		}
		if size < hdr || (i == 0 && !topLevelBox[typ]) {
			return buf, false, nil // size 0 (to the end), corrupt, or not ISO BMFF
		}
		switch typ {
		case "moov":
			ok, err := fill(off + size)
			return buf, ok, err
		case "mdat", "moof":
			return buf, false, nil
		}
		off += size
	}
	return buf, false, nil
}

// topLevelBox lists the boxes an MP4 or QuickTime file may start with.
var topLevelBox = map[string]bool{"ftyp": true, "moov": true, "free": true, "skip": true,
	"wide": true, "mdat": true, "pnot": true, "uuid": true, "styp": true}

func durationText(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		h := int(d / time.Hour)
		if h == 1 {
			return "1-hour"
		}
		return fmt.Sprintf("%d-hour", h)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%d-minute", int(d/time.Minute))
	default:
		return d.String()
	}
}
