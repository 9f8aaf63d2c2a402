package converter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"mp3converter/internal/ffmpeg"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/readahead"
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
	// name); its whitelists (see package ffmpeg) are the second line.
	if src, err = refuseScripts(src); err != nil {
		return gridfs.FileInfo{}, err
	}
	if s.opt.StreamFaststart {
		if prefix, streamable, err = ffmpeg.SniffFaststart(src, maxPrefix); err != nil {
			return gridfs.FileInfo{}, fmt.Errorf("read video: %w", err)
		}
	}
	var (
		in    ffmpeg.Input
		pr    ffmpeg.Info
		piped bool
		mode  = "stream"
	)
	if streamable {
		pr, err = s.probe(ctx, ffmpeg.Pipe(bytes.NewReader(prefix)))
		t = j.lap("probe", t)
		switch {
		case err == nil:
			ra := readahead.New(io.MultiReader(bytes.NewReader(prefix), src), 16, 256<<10)
			defer ra.Close()
			in, piped = ffmpeg.Pipe(ra), true
		case errors.Is(err, ffmpeg.ErrNotMedia):
			j.log.Debug("ffprobe refused the index alone; using a temporary file", "err", err)
		default:
			return gridfs.FileInfo{}, err
		}
	}
	if !piped {
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
		in = ffmpeg.File(tmp.path)
		pr, err = s.probe(ctx, in)
		t = j.lap("probe", t)
		if err != nil {
			return gridfs.FileInfo{}, s.probeFailed(err)
		}
	}
	return s.transcode(ctx, j, in, &pr, name, mode, t)
}

// convertSeekable is convert for a video ffmpeg reads from storage where it
// needs to (ffmpeg.Seekable over ra): no temporary file, no full download
// first (an MP4 with its index at the end), only the chunks the audio is
// in where the file's interleave and the server's costs allow (see
// gridfs.RandomAccess). No ffprobe runs first: ffmpeg says what it opened
// (see transcode).
func (s *Service) convertSeekable(ctx context.Context, j *job, ra *gridfs.RandomAccess, name string) (gridfs.FileInfo, error) {
	in := ffmpeg.Seekable(ra.NewReader, ra.Size())
	return s.transcode(ctx, j, in, nil, name, "seekable", time.Now())
}

// transcode runs ffmpeg on in and stores its MP3; t is when the conversion
// phase starts. pr is what ffprobe found in the input, or nil: then ffmpeg
// starts at once, encoding, and what it reports of its input (the
// container's duration, the audio codec) stands in for the probe. ffprobe
// runs only where that is not enough: when the audio is MP3 already (it is
// copied as it is), or the container is longer than MAX_DURATION (the
// audio's own duration decides), the run is stopped before its output is
// read and the job goes the probed way; when ffmpeg fails, or makes less
// than the container's duration, ffprobe tells why.
func (s *Service) transcode(ctx context.Context, j *job, in ffmpeg.Input, pr *ffmpeg.Info, name, mode string, t time.Time) (gridfs.FileInfo, error) {
	maxDur := s.opt.MaxDuration.Seconds()
	var audio *ffmpeg.Audio // nil: not probed
	if pr != nil {
		if pr.Audio == nil {
			return gridfs.FileInfo{}, noAudio(pr)
		}
		if dur := pr.Seconds(); dur > maxDur {
			return gridfs.FileInfo{}, s.tooLong(fmt.Errorf("%.1f s of audio", dur))
		}
		audio = pr.Audio
	}
	output, copied := mp3Args(audio, s.opt.Bitrate, s.opt.MaxDuration)

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var dur float64 // seconds: the audio's if probed, else the container's
	run, err := ffmpeg.Start(cctx, ffmpeg.Cmd{Path: s.opt.FFmpegPath, Input: in, Output: output,
		// Before the upload reads the MP3's end: a refused MP3 is never stored.
		Check: func(r ffmpeg.Result) error { return s.checkLength(ctx, in, pr, dur, r.Position.Seconds()) }})
	if err != nil {
		return gridfs.FileInfo{}, err
	}
	info := pr
	if pr == nil {
		got, _ := run.Input(cctx)
		t = j.lap("open", t)
		if a := got.Audio; a != nil && (a.Codec == "mp3" || got.Duration > maxDur) {
			cancel()
			_, _ = run.Wait()
			probed, err := s.probe(ctx, in)
			t = j.lap("probe", t)
			if err != nil {
				return gridfs.FileInfo{}, s.probeFailed(err)
			}
			return s.transcode(ctx, j, in, &probed, name, mode, t)
		}
		info = &got
	}
	dur = info.Seconds()
	meta := mp3Meta{Owner: j.owner(), VideoFID: j.fid(), Filename: name, Bitrate: s.opt.BitrateBPS, Copied: copied}
	if info.Audio != nil {
		meta.Codec = info.Audio.Codec
	}
	if copied {
		meta.Bitrate = pr.Audio.BitRate
	}
	j.log.Info("ffmpeg starting", "mode", mode, "format", info.Format, "codec", meta.Codec,
		"copy", copied, "duration_s", math.Round(dur*1000)/1000, "probed", pr != nil)

	stopProgress := s.trackProgress(cctx, j, run.Position, dur)
	up, uerr := s.d.MP3s.Upload(cctx, name, run, nil, gridfs.UploadOptions{ID: j.id, Writer: j.writer, Supersede: j.supersede,
		Metadata: func() any {
			// The MP3's own length: ffmpeg has exited.
			meta.Duration = math.Round(run.Position().Seconds()*1000) / 1000
			return meta
		}})
	cancel() // ffmpeg is killed if the upload stopped reading early
	res, werr := run.Wait()
	stopProgress()
	j.lap("convert", t)

	var pe *permanentError
	switch {
	case errors.Is(werr, ffmpeg.ErrInput):
		return gridfs.FileInfo{}, werr // the video's download broke
	case uerr == nil:
		return up, nil
	case errors.As(werr, &pe):
		return gridfs.FileInfo{}, pe // refused by Check
	case res.Complete && werr != nil && ctx.Err() == nil:
		// ffmpeg failed on its own (not killed by us): the input is bad.
		if pr == nil {
			return gridfs.FileInfo{}, s.whyFailed(ctx, in, werr)
		}
		return gridfs.FileInfo{}, permanent(undecodable, werr)
	case res.Complete && werr != nil:
		return gridfs.FileInfo{}, fmt.Errorf("conversion interrupted: %w (%v)", ctx.Err(), werr)
	}
	return gridfs.FileInfo{}, fmt.Errorf("store mp3: %w", uerr)
}

const undecodable = "the audio could not be decoded (the file is damaged or in a format ffmpeg cannot convert)"

// checkLength refuses an MP3 of got seconds made from an input of dur (0:
// unknown): cut at MAX_DURATION, or much shorter than the input (a
// truncated file). Not probed (pr nil), dur is the container's, which may
// be longer than its audio: ffprobe, on that rare suspicion, gives the
// audio's own.
func (s *Service) checkLength(ctx context.Context, in ffmpeg.Input, pr *ffmpeg.Info, dur, got float64) error {
	short := func(dur float64) bool { return dur > 0 && got < 0.9*dur && dur-got > 1 }
	switch {
	case dur <= 0 && got >= s.opt.MaxDuration.Seconds()-0.5:
		// Unknown duration: -t cut it at the limit.
		return s.tooLong(fmt.Errorf("conversion reached %.1f s", got))
	case !short(dur):
		return nil
	case pr == nil:
		probed, err := s.probe(ctx, in)
		if err != nil {
			return fmt.Errorf("probe a short conversion: %w", err)
		}
		if short(probed.Seconds()) {
			dur = probed.Seconds()
			break
		}
		return nil
	}
	return permanent("the file is damaged or truncated",
		fmt.Errorf("only %.1f of %.1f s of audio could be decoded", got, dur))
}

// whyFailed is the failure of an unprobed ffmpeg run on in (werr): ffprobe
// tells whether the file is media at all, and has audio.
func (s *Service) whyFailed(ctx context.Context, in ffmpeg.Input, werr error) error {
	pr, err := s.probe(ctx, in)
	switch {
	case err != nil:
		return s.probeFailed(err)
	case pr.Audio == nil:
		return noAudio(&pr)
	}
	return permanent(undecodable, werr)
}

// noAudio is the failure of a file that ffprobe found (pr) has no audio.
func noAudio(pr *ffmpeg.Info) error {
	return permanent("the video has no audio track", fmt.Errorf("format %s", pr.Format))
}

// probeFailed is a probe's error: permanent when ffprobe refused the input.
func (s *Service) probeFailed(err error) error {
	if errors.Is(err, ffmpeg.ErrNotMedia) {
		return permanent("the file is not a video or audio file ffmpeg can read", err)
	}
	return err
}

func (s *Service) tooLong(err error) error {
	return permanent(fmt.Sprintf("the video is longer than the %s limit", durationText(s.opt.MaxDuration)), err)
}

// probe runs ffprobe on in, within ProbeTimeout.
func (s *Service) probe(ctx context.Context, in ffmpeg.Input) (ffmpeg.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opt.ProbeTimeout)
	defer cancel()
	return ffmpeg.Probe(ctx, s.opt.FFprobePath, in)
}

// mp3Args are the ffmpeg output options converting the input's first audio
// stream, a, to MP3 of bitrate, at most maxDur long: copied as it is when
// it is MP3 already. a nil (not probed) is encoded: ffmpeg's format
// negotiation then resamples above 48 kHz and downmixes to stereo by
// itself, as -ar and -ac do.
func mp3Args(a *ffmpeg.Audio, bitrate string, maxDur time.Duration) (args []string, copied bool) {
	args = []string{"-map", "0:a:0", "-vn", "-sn", "-dn"}
	if a != nil && a.Codec == "mp3" {
		args = append(args, "-c:a", "copy")
		copied = true
	} else {
		args = append(args, "-c:a", "libmp3lame", "-b:a", bitrate)
		if a != nil && a.SampleRate > 48000 {
			args = append(args, "-ar", "48000") // the highest rate MP3 has
		}
		if a != nil && a.Channels > 2 {
			args = append(args, "-ac", "2") // MP3 is mono or stereo
		}
	}
	args = append(args, "-t", strconv.FormatFloat(maxDur.Seconds(), 'f', 3, 64), "-f", "mp3")
	return args, copied
}

// trackProgress updates the job's percentage from ffmpeg's position, at
// most every ProgressInterval, in the background (a slow database never
// slows ffmpeg down). The returned func stops it.
func (s *Service) trackProgress(ctx context.Context, j *job, position func() time.Duration, dur float64) (stop func()) {
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
			pct := min(int(position().Seconds()/dur*100), 99)
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
