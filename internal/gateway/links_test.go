package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/config"
	"mp3converter/internal/downloadlink"
	"mp3converter/internal/gateway"
	"mp3converter/internal/gridfs"
	"mp3converter/internal/retention"
	"mp3converter/internal/testenv"
)

const (
	linkKey   = "gateway-test-download-link-key-0123456789"
	linkSite  = "https://mp3.example.com"
	bodyLogIn = "; log in at " + linkSite + "/ to download your MP3s"
	bodyBad   = "this download link is not valid: it was altered, it was made with a key that has since been replaced, " +
		"or its MP3 no longer exists" + bodyLogIn
)

// flipped is another base64url character than c.
func flipped(c string) string {
	if c == "A" {
		return "B"
	}
	return "A"
}

func (e *env) putMP3(t *testing.T, owner string, body []byte) string {
	t.Helper()
	info, err := e.mp3s.Upload(context.Background(), "x.mp3", bytes.NewReader(body), bson.D{{Key: "owner", Value: owner}}, gridfs.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return info.ID.Hex()
}

// A signed link downloads its MP3 with no login, as an authenticated
// download does (attachment name, ranges); anything else about it is
// refused with 403 and a sentence that says what happened and where to log
// in.
func TestSignedLinkDownload(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{linkKey: linkKey, publicURL: linkSite + "/"})
	mp3 := bytes.Repeat([]byte("ID3 fake mp3 frames "), 30000) // ~600 kB, 3 chunks
	fid := e.putMP3(t, "alice@example.com", mp3)
	otherFID := e.putMP3(t, "alice@example.com", []byte("ID3 another one"))
	bobFID := e.putMP3(t, "bob@example.com", []byte("ID3 bob's"))
	signer, _ := downloadlink.NewSigner(linkKey)
	later := time.Now().Add(time.Hour)
	good := signer.Sign(fid, "alice@example.com", later)

	t.Run("valid", func(t *testing.T) {
		r := request(t, "GET", good.URL(e.url), "", "", nil)
		if r.status != 200 || r.body != string(mp3) {
			t.Fatalf("%d with %d bytes, want 200 with %d", r.status, len(r.body), len(mp3))
		}
		if cd := r.header.Get("Content-Disposition"); cd != "attachment; filename="+fid+".mp3" {
			t.Errorf("Content-Disposition %q", cd)
		}
		if ct, cc := r.header.Get("Content-Type"), r.header.Get("Cache-Control"); ct != "audio/mpeg" || cc != "private, no-store" {
			t.Errorf("Content-Type %q, Cache-Control %q", ct, cc)
		}
		req, _ := http.NewRequest("GET", good.URL(e.url), nil)
		req.Header.Set("Range", "bytes=261100-261200")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got bytes.Buffer
		got.ReadFrom(resp.Body)
		if resp.StatusCode != 206 || !bytes.Equal(got.Bytes(), mp3[261100:261201]) ||
			resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 261100-261200/%d", len(mp3)) {
			t.Fatalf("range: %d %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Range"), got.Len())
		}
	})

	otherKey, _ := downloadlink.NewSigner(strings.ToUpper(linkKey))
	past := time.Date(2024, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, tc := range []struct {
		name, query, body string
	}{
		{"expired", signer.Sign(fid, "alice@example.com", past).Query(),
			"this download link expired on 2024-03-04 05:06 UTC" + bodyLogIn},
		{"signature altered", strings.Replace(good.Query(), "sig="+good.Sig[:1], "sig="+flipped(good.Sig[:1]), 1), bodyBad},
		{"expiry moved", strings.Replace(good.Query(), fmt.Sprint(later.Unix()), fmt.Sprint(later.Unix()+86400), 1), bodyBad},
		{"expiry moved into the past", strings.Replace(good.Query(), fmt.Sprint(later.Unix()), fmt.Sprint(past.Unix()), 1), bodyBad},
		{"another of the owner's MP3s", strings.Replace(good.Query(), fid, otherFID, 1), bodyBad},
		{"someone else's MP3", strings.Replace(good.Query(), fid, bobFID, 1), bodyBad},
		{"signed for someone else", signer.Sign(fid, "bob@example.com", later).Query(), bodyBad},
		{"another key (rotated)", otherKey.Sign(fid, "alice@example.com", later).Query(), bodyBad},
		// A link reveals nothing about which ids exist.
		{"no such MP3", signer.Sign("65a1b2c3d4e5f60718293a4b", "alice@example.com", later).Query(), bodyBad},
		{"fid not hex", strings.Replace(good.Query(), fid, "zz"+fid[2:], 1), bodyBad},
		{"no sig", "fid=" + fid + "&expires=" + fmt.Sprint(later.Unix()), bodyBad},
		{"no expires", "fid=" + fid + "&sig=" + good.Sig, bodyBad},
		{"no fid", "expires=" + fmt.Sprint(later.Unix()) + "&sig=" + good.Sig, bodyBad},
		{"sig twice", good.Query() + "&sig=" + good.Sig, bodyBad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request(t, "GET", e.url+"/download?"+tc.query, "", "", nil)
			if r.status != 403 || r.body != tc.body {
				t.Fatalf("%d %q,\nwant 403 %q", r.status, r.body, tc.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
	if n := testenv.Metric(t, e.ops.Registry, "gateway_downloads_total", map[string]string{"result": "link_refused"}); n != 14 {
		t.Errorf("gateway_downloads_total{result=link_refused} = %v, want 14", n)
	}

	// The link opens that MP3's download and nothing else.
	t.Run("other routes", func(t *testing.T) {
		for _, path := range []string{"/jobs?" + good.Query(), "/jobs/" + fid + "?" + good.Query()} {
			if r := request(t, "GET", e.url+path, "", "", nil); r.status != 401 || r.body != "missing credentials" {
				t.Errorf("GET %s: %d %q, want 401 missing credentials", path, r.status, r.body)
			}
		}
	})

	// With a token, the download is the bearer one: the link's parameters
	// change nothing.
	t.Run("bearer unchanged", func(t *testing.T) {
		alice := "Bearer " + e.token(t, "alice@example.com", false)
		bob := "Bearer " + e.token(t, "bob@example.com", false)
		for _, tc := range []struct {
			name, query, authz string
			status             int
			body               string
		}{
			{"owner", "fid=" + fid, alice, 200, string(mp3)},
			{"owner, with an expired link's parameters", signer.Sign(fid, "alice@example.com", past).Query(), alice, 200, string(mp3)},
			{"another user, with a valid link", good.Query(), bob, 404, "not found"},
			{"no token, no link", "fid=" + fid, "", 401, "missing credentials"},
			{"bad token, valid link", good.Query(), "Bearer nonsense", 403, "not authorized"},
			{"no fid", "", alice, 400, "fid is required"},
		} {
			if r := request(t, "GET", e.url+"/download?"+tc.query, tc.authz, "", nil); r.status != tc.status || r.body != tc.body {
				t.Errorf("%s: %d %.80q, want %d %.80q", tc.name, r.status, r.body, tc.status, tc.body)
			}
		}
	})
}

// A valid link to an MP3 the retention sweeper deleted gets the 410 its
// owner gets.
func TestSignedLinkExpiredMP3(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{linkKey: linkKey})
	ctx := context.Background()
	fid := e.putMP3(t, "alice@example.com", []byte("ID3 mp3"))
	id, _ := bson.ObjectIDFromHex(fid)
	signer, _ := downloadlink.NewSigner(linkKey)
	link := signer.Sign(fid, "alice@example.com", time.Now().Add(time.Hour))
	if r := request(t, "GET", link.URL(e.url), "", "", nil); r.status != 200 || r.body != "ID3 mp3" {
		t.Fatalf("before expiry: %d %q", r.status, r.body)
	}
	if err := e.expired.Add(ctx, retention.Tombstone{ID: id, Owner: "alice@example.com", ExpiredAt: time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if err := e.mp3s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	want := "this MP3 expired and was deleted on 2027-01-02: upload the video again to convert it anew"
	if r := request(t, "GET", link.URL(e.url), "", "", nil); r.status != 410 || r.body != want {
		t.Errorf("valid link: %d %q, want 410 %q", r.status, r.body, want)
	}
	// Without PUBLIC_URL the way to log in is the page at /.
	forged := signer.Sign(fid, "bob@example.com", time.Now().Add(time.Hour))
	if r := request(t, "GET", forged.URL(e.url), "", "", nil); r.status != 403 || !strings.HasSuffix(r.body, "; log in at / to download your MP3s") {
		t.Errorf("link for another owner: %d %q, want 403 ending with the way to log in", r.status, r.body)
	}
}

// Without DOWNLOAD_LINK_KEY, links are refused, and the bearer download is
// as it was.
func TestSignedLinkWithoutKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{publicURL: linkSite})
	fid := e.putMP3(t, "alice@example.com", []byte("ID3 mp3"))
	signer, _ := downloadlink.NewSigner(linkKey)
	link := signer.Sign(fid, "alice@example.com", time.Now().Add(time.Hour))
	want := "download links are not enabled on this server" + bodyLogIn
	if r := request(t, "GET", link.URL(e.url), "", "", nil); r.status != 403 || r.body != want {
		t.Errorf("link: %d %q, want 403 %q", r.status, r.body, want)
	}
	if r := request(t, "GET", e.url+"/download?fid="+fid, "Bearer "+e.token(t, "alice@example.com", false), "", nil); r.status != 200 || r.body != "ID3 mp3" {
		t.Errorf("bearer: %d %q", r.status, r.body)
	}
}

func TestConfigDownloadLinkKey(t *testing.T) {
	for _, tc := range []struct {
		name, key string
		ok        bool
	}{
		{"unset", "", true},
		{"32 bytes", strings.Repeat("k", 32), true},
		{"31 bytes", strings.Repeat("k", 31), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{}
			if tc.key != "" {
				vars["DOWNLOAD_LINK_KEY"] = tc.key
			}
			c, err := config.LoadFrom[gateway.Config](vars)
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			if tc.ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "DOWNLOAD_LINK_KEY") {
				t.Errorf("Validate = %v, want ok=%v (an error naming DOWNLOAD_LINK_KEY)", err, tc.ok)
			}
			if c.DownloadLinkKey.Reveal() != tc.key || tc.key != "" && strings.Contains(fmt.Sprint(c), tc.key) {
				t.Errorf("key %q, printed %v", c.DownloadLinkKey.Reveal(), c)
			}
		})
	}
}
