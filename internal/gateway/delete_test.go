package gateway_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
	"mp3converter/internal/jobs"
)

// DELETE /jobs/{id}: the owner deletes a finished job (done, expired or
// failed) with its MP3 and video, and it is gone from the API; a running
// one is refused with 409 and kept whole; another user's or an unknown one
// is 404, as GET answers.
func TestDeleteJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	alice := "Bearer " + e.token(t, "alice@example.com", false)
	bob := "Bearer " + e.token(t, "bob@example.com", false)
	root := "Bearer " + e.token(t, "root@example.com", true)
	videos, err := gridfs.NewBucket(e.videosDB)
	if err != nil {
		t.Fatal(err)
	}

	// upload stores a video for alice and returns its job id.
	upload := func(name string) string {
		t.Helper()
		r := e.upload(t, strings.TrimPrefix(alice, "Bearer "), part{field: "file", filename: name, ctype: "video/mp4", body: []byte("video bytes of " + name)})
		if r.status != 200 {
			t.Fatalf("upload %s: %d %q", name, r.status, r.body)
		}
		return strings.TrimPrefix(r.header.Get("Location"), "/jobs/")
	}
	videoStored := func(fid string) bool {
		t.Helper()
		id, _ := bson.ObjectIDFromHex(fid)
		_, err := videos.Stat(ctx, id)
		if err != nil && !errors.Is(err, gridfs.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	mp3Stored := func(fid string) bool {
		t.Helper()
		id, _ := bson.ObjectIDFromHex(fid)
		_, err := e.mp3s.Stat(ctx, id)
		if err != nil && !errors.Is(err, gridfs.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	del := func(id, authz string) result {
		t.Helper()
		return request(t, "DELETE", e.url+"/jobs/"+id, authz, "", nil)
	}

	done := upload("done.mp4")
	doneMP3 := e.putMP3(t, "alice@example.com", []byte("ID3 the mp3 of done.mp4"))
	if err := e.jobs.Done(ctx, done, doneMP3); err != nil {
		t.Fatal(err)
	}
	failed := upload("failed.mp4")
	if err := e.jobs.Failed(ctx, failed, "no audio track"); err != nil {
		t.Fatal(err)
	}
	// Expired: the sweeper deleted the MP3 (and, by default, the video).
	expired := upload("expired.mp4")
	expiredMP3 := e.putMP3(t, "alice@example.com", []byte("ID3 gone"))
	if err := e.jobs.Done(ctx, expired, expiredMP3); err != nil {
		t.Fatal(err)
	}
	if err := e.jobs.MarkExpired(ctx, expired, time.Now()); err != nil {
		t.Fatal(err)
	}
	expiredMP3ID, _ := bson.ObjectIDFromHex(expiredMP3)
	expiredID, _ := bson.ObjectIDFromHex(expired)
	if err := e.mp3s.Delete(ctx, expiredMP3ID); err != nil {
		t.Fatal(err)
	}
	if err := videos.Delete(ctx, expiredID); err != nil {
		t.Fatal(err)
	}
	queued := upload("queued.mp4")
	converting := upload("converting.mp4")
	if err := e.jobs.Progress(ctx, converting, 40); err != nil {
		t.Fatal(err)
	}
	e.drain(t)

	// Refusals first, while everything is there.
	for _, tc := range []struct {
		name, id, authz string
		status          int
		body            string
	}{
		{"queued", queued, alice, 409, "this conversion is still running: delete it once it is done or has failed"},
		{"converting", converting, alice, 409, "this conversion is still running: delete it once it is done or has failed"},
		{"another user's", done, bob, 404, "not found"},
		{"an admin is not the owner", done, root, 404, "not found"},
		{"unknown", bson.NewObjectID().Hex(), alice, 404, "not found"},
		{"not an id", "nope", alice, 404, "not found"},
		{"no token", done, "", 401, "missing credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := del(tc.id, tc.authz); r.status != tc.status || r.body != tc.body {
				t.Errorf("DELETE: %d %q, want %d %q", r.status, r.body, tc.status, tc.body)
			}
		})
	}
	for _, id := range []string{queued, converting} {
		if r := request(t, "GET", e.url+"/jobs/"+id, alice, "", nil); r.status != 200 || !videoStored(id) {
			t.Errorf("job %s after a refused delete: %d, video stored %v", id, r.status, videoStored(id))
		}
	}
	if !videoStored(done) || !mp3Stored(doneMP3) {
		t.Fatal("another user's delete removed files")
	}

	for _, tc := range []struct{ name, id, mp3 string }{
		{"done", done, doneMP3}, {"failed", failed, ""}, {"expired", expired, expiredMP3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := del(tc.id, alice); r.status != 204 || r.body != "" {
				t.Fatalf("DELETE: %d %q, want 204 and no body", r.status, r.body)
			}
			if r := request(t, "GET", e.url+"/jobs/"+tc.id, alice, "", nil); r.status != 404 {
				t.Errorf("GET after delete: %d, want 404", r.status)
			}
			if _, err := e.jobs.Get(ctx, tc.id); !errors.Is(err, jobs.ErrNotFound) {
				t.Errorf("the job record is still there: %v", err)
			}
			if videoStored(tc.id) {
				t.Error("the video is still stored")
			}
			if tc.mp3 != "" {
				if mp3Stored(tc.mp3) {
					t.Error("the MP3 is still stored")
				}
				if r := request(t, "GET", e.url+"/download?fid="+tc.mp3, alice, "", nil); r.status != 404 {
					t.Errorf("download after delete: %d, want 404", r.status)
				}
			}
			if r := del(tc.id, alice); r.status != 404 {
				t.Errorf("second DELETE: %d, want 404", r.status)
			}
		})
	}

	// What is left in the list: the two running ones.
	r := request(t, "GET", e.url+"/jobs", alice, "", nil)
	if r.status != 200 || strings.Count(r.body, `"id"`) != 2 || !strings.Contains(r.body, queued) || !strings.Contains(r.body, converting) {
		t.Errorf("jobs after deletes: %d %s", r.status, r.body)
	}
}
