package e2e

import (
	"encoding/json"
	"testing"
	"time"

	"mp3converter/internal/testenv"
)

// A publish whose confirm comes too late: the gateway answers 503 and
// removes the video, but the broker had the message. It must not outlive
// the 503: the converter drops it without a word to the user (no failure
// email about an upload they were told had failed), nothing is stored.
func TestUploadAnswered503LeavesNoTrace(t *testing.T) {
	t.Parallel()
	s := startSuite(t)
	email, tok := s.newUser(t, "late-confirm")
	video := makeVideo(t, 2)

	s.rabbit.Delay(8 * time.Second) // the suite's PUBLISH_TIMEOUT is 5 s
	r := s.tryUpload(tok, video)
	s.rabbit.Delay(0)
	if r.err != nil || r.status != 503 {
		t.Fatalf("upload with the confirm late: %d %q (%v), want 503", r.status, r.body, r.err)
	}

	// The broker had the message: the converter receives it and drops it.
	testenv.Eventually(t, time.Minute, "the converter drops the withdrawn upload's message", func() bool {
		v, err := metric(s.converter, "conversions_total", `result="withdrawn"`)
		return err == nil && v >= 1
	})
	s.waitQueuesEmpty(t, 30*time.Second)

	var list []map[string]any
	if status, b := s.get(t, tok, "/jobs"); status != 200 || json.Unmarshal(b, &list) != nil || len(list) != 0 {
		t.Fatalf("GET /jobs = %d %s, want no job", status, b)
	}
	if status, _ := s.get(t, tok, "/jobs/"+r.fid()); r.job != "" && status != 404 {
		t.Fatalf("GET %s = %d, want 404", r.job, status)
	}
	if n := s.mp3Count(t); n != 0 {
		t.Fatalf("%d MP3s stored, want none", n)
	}
	if c := gridCounts(t, s.videosDB); c.files != 0 || c.strays != 0 {
		t.Fatalf("videos left: %+v", c)
	}
	if mails := s.mail.To(t, email); len(mails) != 0 {
		t.Fatalf("%d emails to %s about an upload that was answered 503: %+v", len(mails), email, mails)
	}
}
