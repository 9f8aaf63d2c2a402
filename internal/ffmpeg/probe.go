package ffmpeg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Info is what ffprobe tells about an input.
type Info struct {
	Format   string
	Duration float64 // seconds of the container, 0 if unknown
	Audio    *Audio  // nil: no audio stream
}

// Audio is the first audio stream, the one -map 0:a:0 converts.
type Audio struct {
	Codec      string
	BitRate    int     // bits per second, 0 if unknown
	Duration   float64 // seconds, 0 if unknown
	SampleRate int
	Channels   int
}

// Seconds is the audio's duration if known, else the container's; 0 if
// neither is.
func (i Info) Seconds() float64 {
	if i.Audio != nil && i.Audio.Duration > 0 {
		return i.Audio.Duration
	}
	return i.Duration
}

// ErrNotMedia is ffprobe refusing the input.
var ErrNotMedia = errors.New("ffprobe cannot read the input")

// Probe runs the ffprobe binary on in (within the whitelists: see the
// package comment) until ctx ends. An input ffprobe refuses gives an error
// wrapping ErrNotMedia; anything else (ffprobe missing, killed, ctx ended)
// is a plain error.
func Probe(ctx context.Context, ffprobe string, in Input) (Info, error) {
	input := in.name
	var srv *server
	if in.open != nil {
		var err error
		if srv, err = serve(in, nil); err != nil {
			return Info{}, err
		}
		defer srv.Close()
		input = srv.url
	}
	args := append([]string{"-v", "error", "-hide_banner",
		"-show_entries", "format=format_name,duration:stream=index,codec_type,codec_name,bit_rate,duration,sample_rate,channels",
		"-of", "json"}, inputOptions(in)...)
	cmd := exec.CommandContext(ctx, ffprobe, append(args, "-i", input)...)
	cmd.Stdin = in.stdin
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: 2048}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return Info{}, fmt.Errorf("ffprobe: %w", ctx.Err())
	case srv != nil && srv.Err() != nil:
		return Info{}, fmt.Errorf("ffprobe: %w", srv.Err()) // storage, not the file
	case errors.As(err, &ee):
		return Info{}, fmt.Errorf("%w: %v: %s", ErrNotMedia, err, stderr.String())
	case err != nil:
		return Info{}, fmt.Errorf("ffprobe: %w", err)
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
		return Info{}, fmt.Errorf("ffprobe output: %w", err)
	}
	if len(out.Streams) == 0 {
		return Info{}, fmt.Errorf("%w: no streams (format %q)", ErrNotMedia, out.Format.Name)
	}
	res := Info{Format: out.Format.Name, Duration: parseFloat(out.Format.Duration)}
	for _, st := range out.Streams {
		if st.CodecType != "audio" {
			continue
		}
		res.Audio = &Audio{
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
