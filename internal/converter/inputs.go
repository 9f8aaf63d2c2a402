package converter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// What ffprobe and ffmpeg may open. A video is only ever read from a file in
// ScratchDir or from a pipe, in a real media container: no other protocol
// (http, tcp, udp, rtp, data, subfile, concat, crypto, …) and none of the
// demuxers that read a playlist or a script and then open what it names
// (hls, dash, concat, sdp, rtsp, image2, lavfi, ffmetadata, …), whatever
// the ffmpeg build in an image enables by default.
const (
	fileProtocols = "file"
	pipeProtocols = "pipe"

	// mediaDemuxers is ffmpeg's -format_whitelist: common audio and video
	// containers, by their demuxer names (ffmpeg -demuxers). A demuxer
	// with several names ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm") is
	// allowed when one of them is listed; all are, for clarity.
	mediaDemuxers = "mov,mp4,m4a,3gp,3g2,mj2," + // MP4, MOV, M4A, 3GP
		"matroska,webm," + "avi," + "flv," + "asf," + // MKV, WebM; AVI; FLV; WMV/WMA
		"mpegts," + "mpeg," + "ogg," + "nut," + "rm," + "dv," + "mxf," + // TS, PS/VOB, Ogg, NUT, RealMedia, DV, MXF
		"wav," + "w64," + "aiff," + "caf," + "au," + // PCM containers
		"mp3," + "aac," + "ac3," + "eac3," + "dts," + "flac," + "wv," + "ape," + "tta," + "amr," + "mpc,mpc8," + "loas," + "truehd"
)

// inputOptions are the options ffprobe and ffmpeg get before "-i input".
func inputOptions(input string) []string {
	protocols := fileProtocols
	if input == "pipe:0" {
		protocols = pipeProtocols
	}
	return []string{"-protocol_whitelist", protocols, "-format_whitelist", mediaDemuxers}
}

// fileInput is the ffmpeg input naming the local file path: with the
// "file:" prefix, so that no part of the path is read as a protocol.
func fileInput(path string) string { return "file:" + path }

// sniffBytes is how much of a video is looked at for playlists and scripts.
const sniffBytes = 4096

// refuseScripts reads the first bytes of src. A playlist, manifest or script
// (a text file that makes ffmpeg open other files or URLs) is a permanent
// failure naming what it is; anything else gives a reader replaying src
// from its start.
func refuseScripts(src io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(src, sniffBytes)
	head, err := br.Peek(sniffBytes)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read video: %w", err)
	}
	if kind := scriptKind(head); kind != "" {
		return nil, permanent(fmt.Sprintf("the file is %s, not a video or audio file: "+
			"playlists, manifests and scripts that point at other files are not converted; upload the media file itself", kind), nil)
	}
	return br, nil
}

var utf8BOM = []byte("\xef\xbb\xbf")

// scriptKind names the playlist, manifest or script format that head (the
// start of a file) is in, or returns "" when it is none of them. Only text
// is considered: a media file (binary: a NUL or control byte in its first
// bytes) is left to ffprobe, whatever words its data happens to contain.
func scriptKind(head []byte) string {
	b := bytes.TrimPrefix(head, utf8BOM)
	if !isText(b) {
		return ""
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	lower := bytes.ToLower(b)
	switch {
	case bytes.HasPrefix(lower, []byte("#extm3u")), bytes.Contains(lower, []byte("#ext-x-")),
		bytes.HasPrefix(lower, []byte("#extinf")), bytes.Contains(lower, []byte("\n#extinf")):
		return "an HLS playlist (M3U8)"
	case bytes.HasPrefix(lower, []byte("ffconcat version")):
		return "an ffconcat script"
	case bytes.HasPrefix(b, []byte(";FFMETADATA")):
		return "an FFmpeg metadata file"
	case bytes.HasPrefix(lower, []byte("[playlist]")):
		return "a PLS playlist"
	case bytes.HasPrefix(b, []byte("<")) && bytes.Contains(lower, []byte("<mpd")):
		return "a DASH manifest (MPD)"
	case bytes.HasPrefix(b, []byte("<")):
		return "an XML or HTML document"
	case bytes.HasPrefix(b, []byte("v=0")) || hasLine(b, "c=IN IP"):
		// "v=0" opens every SDP; ffmpeg's SDP probe looks for "c=IN IP".
		return "an SDP session description"
	}
	return ""
}

// isText reports whether b holds no NUL or other control byte but tab, CR
// and LF (UTF-8 above 0x7f is text too).
func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return true
}

// hasLine reports whether a line of b starts with prefix.
func hasLine(b []byte, prefix string) bool {
	for line := range bytes.Lines(b) {
		if bytes.HasPrefix(bytes.TrimLeft(line, " \t"), []byte(prefix)) {
			return true
		}
	}
	return false
}
