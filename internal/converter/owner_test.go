package converter

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
	"mp3converter/internal/message"
	"mp3converter/internal/testenv"
)

// The MP3 belongs to the video's owner (the metadata.owner the gateway
// stores with the upload), whatever the message's username says: a message
// naming somebody else changes neither the MP3's owner (what /download
// checks) nor who is told on MP3_QUEUE (whom notification emails); the
// disagreement is logged. A video stored by the original gateway has no
// owner: the message's username is used, as the original did.
func TestOwnerComesFromTheVideo(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	log, logs := testenv.Logger(t)
	d := h.deps()
	d.Log = log
	h.start(d, h.options())
	ctx := context.Background()
	const (
		mallory = "mallory@example.com" // publishes forged messages
		bob     = "bob@example.com"     // uploaded through the original gateway
	)
	// store keeps a video as a gateway would (meta nil: the original's
	// put() without metadata) with its job, and publishes a message naming
	// username.
	store := func(data []byte, filename string, meta any, jobUser, username string) string {
		t.Helper()
		info, err := h.videos.Upload(ctx, filename, bytes.NewReader(data), meta, gridfs.UploadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fid := info.ID.Hex()
		if err := h.jobs.Create(ctx, jobs.Job{ID: fid, Username: jobUser, Filename: filename, VideoFID: fid}); err != nil {
			t.Fatal(err)
		}
		h.publish(message.Conversion{VideoFID: fid, Username: username, Filename: filename}.Encode())
		return fid
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(media(t, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	owned := func(name string) bson.M { return bson.M{"owner": user, "filename": name, "content_type": "video/mp4"} }

	forged := store(read("mp4"), "forged.mp4", owned("forged.mp4"), user, mallory)
	forgedFast := store(read("mp4-faststart"), "fast.mp4", owned("fast.mp4"), user, mallory)
	legacy := store(read("mp4"), "legacy.mp4", nil, bob, bob)
	honest := store(read("mp4"), "honest.mp4", owned("honest.mp4"), user, user)
	broken := store([]byte("not a video at all\n"), "broken.mp4", owned("broken.mp4"), user, mallory)

	for _, c := range []struct {
		fid, source, name, owner string
	}{
		{forged, "mp4", "forged.mp3", user},
		{forgedFast, "mp4-faststart", "fast.mp3", user},
		{legacy, "mp4", "legacy.mp3", bob},
		{honest, "mp4", "honest.mp3", user},
	} {
		if j := h.waitJob(c.fid, time.Minute); j.Status != jobs.Done {
			t.Fatalf("job %s: %+v, want done", c.name, j)
		}
		// metadata.owner is what the gateway's /download compares with the
		// caller's username: only the owner (or an admin) downloads it.
		h.checkMP3(c.fid, media(t, c.source), c.name, c.owner)
		if m := h.mp3Message(c.fid, 10*time.Second); m.Username != c.owner || m.MP3FID == nil {
			t.Errorf("%s: mp3 message %+v, want username %q (the video's owner)", c.name, m, c.owner)
		}
	}
	// A failure is told to the owner, not to the forged username.
	if j := h.waitJob(broken, 30*time.Second); j.Status != jobs.Failed || !strings.Contains(j.Error, "not a video or audio file") {
		t.Errorf("broken job %+v, want failed", j)
	}
	if m := h.mp3Message(broken, 10*time.Second); m.Username != user || m.Error == "" || m.MP3FID != nil {
		t.Errorf("failure message %+v, want an error for %q (the video's owner)", m, user)
	}

	// A converter died after storing the MP3 of a video (job not done,
	// nothing published); the redelivery names another user: the message
	// goes to the owner.
	video, err := h.videos.Upload(ctx, "again.mp4", strings.NewReader("whatever"), owned("again.mp4"), gridfs.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	again := video.ID.Hex()
	if err := h.jobs.Create(ctx, jobs.Job{ID: again, Username: user, Filename: "again.mp4", VideoFID: again, Status: jobs.Converting}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.mp3s.Upload(ctx, "again.mp3", strings.NewReader("ID3 stored"), mp3Meta{Owner: user, VideoFID: again, Filename: "again.mp3"},
		gridfs.UploadOptions{ID: video.ID}); err != nil {
		t.Fatal(err)
	}
	h.publish(message.Conversion{VideoFID: again, Username: mallory, Filename: "again.mp4"}.Encode())
	if j := h.waitJob(again, 30*time.Second); j.Status != jobs.Done {
		t.Fatalf("job %+v, want done", j)
	}
	if m := h.mp3Message(again, 10*time.Second); m.Username != user {
		t.Errorf("mp3 message after a redelivery %+v, want username %q", m, user)
	}

	// The forged messages were logged, with both names; the honest and
	// the legacy ones were not.
	warned := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["level"] != "WARN" {
			continue
		}
		line := sc.Text()
		if strings.Contains(line, mallory) && strings.Contains(line, user) {
			fid, _ := rec["video_fid"].(string)
			warned[fid] = true
		}
	}
	for _, fid := range []string{forged, forgedFast, broken, again} {
		if !warned[fid] {
			t.Errorf("no warning naming %s and %s for video %s", mallory, user, fid)
		}
	}
	for _, fid := range []string{legacy, honest} {
		if warned[fid] {
			t.Errorf("warning for video %s whose message names its owner", fid)
		}
	}
}
