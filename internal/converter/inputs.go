package converter

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"mp3converter/internal/ffmpeg"
)

// refuseScripts reads the first bytes of src. A playlist, manifest or script
// (a text file that makes ffmpeg open other files or URLs: see
// ffmpeg.ScriptKind) is a permanent failure naming what it is; anything
// else gives a reader replaying src from its start.
func refuseScripts(src io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(src, ffmpeg.SniffBytes)
	head, err := br.Peek(ffmpeg.SniffBytes)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read video: %w", err)
	}
	if kind := ffmpeg.ScriptKind(head); kind != "" {
		return nil, permanent(fmt.Sprintf("the file is %s, not a video or audio file: "+
			"playlists, manifests and scripts that point at other files are not converted; upload the media file itself", kind), nil)
	}
	return br, nil
}
