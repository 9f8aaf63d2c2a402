package converter

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/gridfs"
)

// Once its MP3 is stored and announced, a video is removed (it was kept
// for ever and filled MongoDB's volume); KEEP_VIDEOS keeps it.
func TestVideoRemovedOnceConverted(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		h := newHarness(t)
		opt := h.options()
		opt.KeepVideos = keep
		h.start(h.deps(), opt)
		fid := h.submitFile(media(t, "mp4"), "clip.mp4", "a@example.com")
		if j := h.waitJob(fid, time.Minute); j.Status != "done" {
			t.Fatalf("keep %v: job %+v, want done", keep, j)
		}
		h.mp3Message(fid, 30*time.Second)
		// Counted once the handler returned, that is after the video was
		// removed (or kept): the job is done and announced a moment before.
		h.waitResult(resultDone, 1, 30*time.Second)
		id, _ := bson.ObjectIDFromHex(fid)
		_, err := h.videos.Stat(context.Background(), id)
		switch {
		case keep && err != nil:
			t.Fatalf("KEEP_VIDEOS: the video is gone: %v", err)
		case !keep && !errors.Is(err, gridfs.ErrNotFound):
			t.Fatalf("the video of a converted job is still there (%v)", err)
		}
		if !keep {
			var raw struct {
				VideoDeleted bool `bson:"video_deleted"`
			}
			if err := h.videosDB.Collection("jobs").FindOne(context.Background(), bson.D{{Key: "_id", Value: fid}}).Decode(&raw); err != nil || !raw.VideoDeleted {
				t.Fatalf("job not marked video_deleted: %+v %v", raw, err)
			}
			if _, err := h.mp3s.Stat(context.Background(), id); err != nil {
				t.Fatalf("the MP3 went too: %v", err)
			}
		}
	}
}
