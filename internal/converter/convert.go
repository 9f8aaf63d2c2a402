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
			if errors.Is(err, ffmpeg.ErrNotMedia) {
				return gridfs.FileInfo{}, permanent("the file is not a video or audio file ffmpeg can read", err)
			}
			return gridfs.FileInfo{}, err
		}
	}
	return s.transcode(ctx, j, in, pr, name, mode, t)
}

// convertSeekable is convert for a video ffmpeg reads from storage where it
// needs to (ffmpeg.Seekable over ra): no temporary file, no full download
// first (an MP4 with its index at the end), only the chunks the audio is
// in where the file's interleave and the server's costs allow (see
// gridfs.RandomAccess).
func (s *Service) convertSeekable(ctx context.Context, j *job, ra *gridfs.RandomAccess, name string) (gridfs.FileInfo, error) {
	t := time.Now()
	in := ffmpeg.Seekable(ra.NewReader, ra.Size())
	pr, err := s.probe(ctx, in)
	t = j.lap("probe", t)
	switch {
	case errors.Is(err, ffmpeg.ErrNotMedia):
		return gridfs.FileInfo{}, permanent("the file is not a video or audio file ffmpeg can read", err)
	case err != nil:
		return gridfs.FileInfo{}, err
	}
	return s.transcode(ctx, j, in, pr, name, "seekable", t)
}

// transcode runs ffmpeg on in (probed: pr) and stores its MP3; t is when
// the conversion phase starts.
func (s *Service) transcode(ctx context.Context, j *job, in ffmpeg.Input, pr ffmpeg.Info, name, mode string, t time.Time) (gridfs.FileInfo, error) {
	if pr.Audio == nil {
		return gridfs.FileInfo{}, permanent("the video has no audio track", fmt.Errorf("format %s", pr.Format))
	}
	dur, maxDur := pr.Seconds(), s.opt.MaxDuration.Seconds()
	if dur > maxDur {
		return gridfs.FileInfo{}, permanent(fmt.Sprintf("the video is longer than the %s limit", durationText(s.opt.MaxDuration)),
			fmt.Errorf("%.1f s of audio", dur))
	}

	output, copied := mp3Args(pr.Audio, s.opt.Bitrate, s.opt.MaxDuration)
	meta := mp3Meta{Owner: j.owner(), VideoFID: j.fid(), Filename: name,
		Duration: math.Round(dur*1000) / 1000, Bitrate: s.opt.BitrateBPS, Codec: pr.Audio.Codec, Copied: copied}
	if copied {
		meta.Bitrate = pr.Audio.BitRate
	}
	j.log.Info("ffmpeg starting", "mode", mode, "format", pr.Format, "codec", pr.Audio.Codec,
		"copy", copied, "duration_s", meta.Duration)

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run, err := ffmpeg.Start(cctx, ffmpeg.Cmd{Path: s.opt.FFmpegPath, Input: in, Output: output,
		// Before the upload reads the MP3's end: a refused MP3 is never stored.
		Check: func(r ffmpeg.Result) error {
			got := r.Position.Seconds()
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
		}})
	if err != nil {
		return gridfs.FileInfo{}, err
	}
	stopProgress := s.trackProgress(cctx, j, run.Position, dur)
	up, uerr := s.d.MP3s.Upload(cctx, name, run, meta, gridfs.UploadOptions{ID: j.id, Writer: j.writer, Supersede: j.supersede})
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
		return gridfs.FileInfo{}, permanent("the audio could not be decoded (the file is damaged or in a format ffmpeg cannot convert)", werr)
	case res.Complete && werr != nil:
		return gridfs.FileInfo{}, fmt.Errorf("conversion interrupted: %w (%v)", ctx.Err(), werr)
	}
	return gridfs.FileInfo{}, fmt.Errorf("store mp3: %w", uerr)
}

// probe runs ffprobe on in, within ProbeTimeout.
func (s *Service) probe(ctx context.Context, in ffmpeg.Input) (ffmpeg.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opt.ProbeTimeout)
	defer cancel()
	return ffmpeg.Probe(ctx, s.opt.FFprobePath, in)
}

// mp3Args are the ffmpeg output options converting the input's first audio
// stream, a, to MP3 of bitrate, at most maxDur long: copied as it is when
// it is MP3 already.
func mp3Args(a *ffmpeg.Audio, bitrate string, maxDur time.Duration) (args []string, copied bool) {
	args = []string{"-map", "0:a:0", "-vn", "-sn", "-dn"}
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
