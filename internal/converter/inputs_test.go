package converter

import (
	"net"
	"strings"
	"testing"

	"mp3converter/internal/ffmpeg/ffmpegtest"
)

// Playlists, manifests and scripts (text that makes ffmpeg open other
// files or URLs) uploaded as a video fail for good with a reason that
// names what the file is; ffmpeg never runs on them, so nothing they point
// at is fetched.
func TestPlaylistsAndScriptsAreRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.start(h.deps(), h.options())
	target := ffmpegtest.NewConnCounter(t)
	url := "http://" + target.Addr()
	_, port, _ := net.SplitHostPort(target.Addr())

	cases := []struct {
		name, body, want string
	}{
		{"hls", "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\n" + url + "/seg0.ts\n#EXT-X-ENDLIST\n",
			"the file is an HLS playlist"},
		{"hls with BOM and CRLF", "\xef\xbb\xbf#EXTM3U\r\n#EXTINF:4.0,\r\n" + url + "/seg0.ts\r\n",
			"the file is an HLS playlist"},
		{"hls without header", "\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\n" + url + "/seg0.ts\n",
			"the file is an HLS playlist"},
		{"dash", `<?xml version="1.0" encoding="UTF-8"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT4S" minBufferTime="PT2S"
     profiles="urn:mpeg:dash:profile:isoff-on-demand:2011">
  <Period><AdaptationSet mimeType="audio/mp4"><Representation id="a" bandwidth="128000">
    <BaseURL>` + url + `/audio.mp4</BaseURL><SegmentBase indexRange="0-100"/>
  </Representation></AdaptationSet></Period>
</MPD>
`, "the file is a DASH manifest"},
		{"ffconcat", "ffconcat version 1.0\nfile " + url + "/a.mp4\n", "the file is an ffconcat script"},
		{"sdp", "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " + port + " RTP/AVP 0\r\n",
			"the file is an SDP session description"},
		{"ffmetadata", ";FFMETADATA1\ntitle=" + url + "\n", "the file is an FFmpeg metadata file"},
		{"html", "<!DOCTYPE html>\n<html><body><video src=\"" + url + "/v.mp4\"></video></body></html>\n",
			"the file is an XML or HTML document"},
	}
	fids := make([]string, len(cases))
	for i, c := range cases {
		fids[i] = h.submit(strings.NewReader(c.body), "video.mp4", user)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { h.checkFailed(fids[i], c.want) })
	}
	if n := h.result(resultRetry); n != 0 {
		t.Errorf("%d retries of refused files", n)
	}
	// Every handling has ended (its job failed), and with it every process
	// it ran: a connection one of them made was accepted before this one.
	if n := target.ConnsSoFar(t); n != 0 {
		t.Errorf("%d connections to %s, the address the playlists point at; want none", n, target.Addr())
	}
}
