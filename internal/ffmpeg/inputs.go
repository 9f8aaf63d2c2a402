package ffmpeg

import "bytes"

// What ffprobe and ffmpeg may open. An input is only ever read from a local
// file, from a pipe, or (a Seekable input) from this process over HTTP on
// a loopback port, in a real media container: no other protocol (udp, rtp,
// data, subfile, concat, crypto, …; http and tcp only for Seekable, whose
// demuxers open no other URL: mov's data references, enable_drefs, are
// off by default) and none of the demuxers
// that read a playlist or a script and then open what it names (hls, dash,
// concat, sdp, rtsp, image2, lavfi, ffmetadata, …), whatever the ffmpeg
// build in an image enables by default.
const (
	fileProtocols = "file"
	pipeProtocols = "pipe"
	httpProtocols = "http,tcp"

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
func inputOptions(in Input) []string {
	var extra []string
	protocols := fileProtocols
	switch {
	case in.stdin != nil:
		protocols = pipeProtocols
	case in.open != nil:
		protocols, extra = httpProtocols, seekableOptions
	}
	return append([]string{"-protocol_whitelist", protocols, "-format_whitelist", mediaDemuxers}, extra...)
}

// SniffBytes is how much of an input ScriptKind needs to look at.
const SniffBytes = 4096

var utf8BOM = []byte("\xef\xbb\xbf")

// ScriptKind names the playlist, manifest or script format (a text file
// that makes ffmpeg open other files or URLs) that head, the first
// SniffBytes of a file, is in, such as "an HLS playlist (M3U8)"; it
// returns "" when it is none of them. Only text is considered: a media
// file (binary: a NUL or control byte in its first bytes) is left to
// ffprobe, whatever words its data happens to contain. The whitelists of
// Probe and Start are the second line against such files.
func ScriptKind(head []byte) string {
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
