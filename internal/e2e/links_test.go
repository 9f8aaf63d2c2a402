package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// e2eLinkKey is the suite's DOWNLOAD_LINK_KEY, the same for the
// notification and the gateway.
const e2eLinkKey = "e2e-download-link-key-0123456789-abcdef"

var signedLinkLine = regexp.MustCompile(`(?m)^(http\S+/download\?fid=([0-9a-f]{24})&expires=[0-9]+&sig=[A-Za-z0-9_-]+)\r?$`)

// The email's one-click link, taken from the mail that arrived in
// Mailpit, downloads the MP3 with no token: the same bytes as the bearer
// download, a playable MP3. Altered, it is refused with a sentence that
// says where to log in.
func TestEmailLinkDownloadsWithoutLogin(t *testing.T) {
	t.Parallel()
	s := startSuite(t)
	email, tok := s.newUser(t, "e2e_link")
	s.upload(t, tok, makeVideo(t, 5))
	msg := s.mail.WaitFor(t, email, 3*time.Minute)

	m := signedLinkLine.FindStringSubmatch(msg.Text)
	if m == nil {
		t.Fatalf("email has no signed download link:\n%s", msg.Text)
	}
	link, fid := m[1], m[2]
	if f := fidLine.FindStringSubmatch(msg.Text); f == nil || f[1] != fid {
		t.Fatalf("the link's fid %s is not the email's mp3 file_id line:\n%s", fid, msg.Text)
	}
	if !strings.HasPrefix(link, s.env["PUBLIC_URL"]+"/download?") {
		t.Fatalf("link %s is not on PUBLIC_URL %s", link, s.env["PUBLIC_URL"])
	}

	get := func(url string) (*http.Response, []byte) {
		t.Helper()
		resp, err := client.Get(url) // no Authorization: a click in a mail client
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	resp, mp3 := get(link)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %q", link, resp.StatusCode, mp3)
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != "attachment; filename="+fid+".mp3" {
		t.Errorf("Content-Disposition %q", cd)
	}
	status, viaToken := s.get(t, tok, "/download?fid="+fid)
	if status != 200 || !bytes.Equal(mp3, viaToken) {
		t.Fatalf("bearer download: %d, %d bytes; the link gave %d bytes", status, len(viaToken), len(mp3))
	}
	out := filepath.Join(t.TempDir(), fid+".mp3")
	if err := os.WriteFile(out, mp3, 0o600); err != nil {
		t.Fatal(err)
	}
	p := ffprobe(t, out)
	dur, _ := strconv.ParseFloat(p.Format.Duration, 64)
	if p.Format.FormatName != "mp3" || dur < 4.5 || dur > 5.5 {
		t.Fatalf("downloaded file is %+v (%.2f s), want a 5-second mp3", p, dur)
	}

	// One character of the signature changed: 403 and the way to log in.
	altered := link[:len(link)-1] + map[bool]string{true: "B", false: "A"}[strings.HasSuffix(link, "A")]
	resp, body := get(altered)
	want := "log in at " + s.env["PUBLIC_URL"] + "/ to download your MP3s"
	if resp.StatusCode != 403 || !strings.HasPrefix(string(body), "this download link is not valid") || !strings.HasSuffix(string(body), want) {
		t.Errorf("altered link: %d %q, want 403 saying it is not valid and %q", resp.StatusCode, body, want)
	}
	// Without the link's parameters, the download still needs a token.
	if resp, body := get(s.gateway.URL() + "/download?fid=" + fid); resp.StatusCode != 401 || string(body) != "missing credentials" {
		t.Errorf("no token, no link: %d %q, want 401 missing credentials", resp.StatusCode, body)
	}
}
