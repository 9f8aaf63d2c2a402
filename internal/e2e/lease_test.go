package e2e

import (
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"mp3converter/internal/message"
	"mp3converter/internal/testenv"
)

// The same video handed to two converter processes at once (the gateway's
// message, and a duplicate of it, as a broker hands out a message again
// when a converter kept it past its consumer_timeout): one converts it,
// the other waits for its lease and then only acks. The user sees one job
// done, one MP3 that plays for the clip's length, one email; ffmpeg's work
// is done once (no conversion retried or failed), and the queues drain.
func TestTwoConverterProcessesOneVideo(t *testing.T) {
	t.Parallel()
	// One conversion per process, read at the clip's pace: the 4-second
	// clip is converting while the duplicate arrives at the other process.
	s := startSuiteWith(t, suiteOptions{converters: 2, env: map[string]string{
		"CONCURRENCY": "1", "FFMPEG_PATH": realtimeFFmpeg(t),
	}})
	email, tok := s.newUser(t, "e2e_twoconv")
	video := makeVideo(t, 4)

	job := s.upload(t, tok, video)
	fid := filepath.Base(job)
	testenv.Publish(t, s.amqpURL, s.videoQueue, amqp.Publishing{
		DeliveryMode: amqp.Persistent, ContentType: "application/json", MessageId: "duplicate-" + fid,
		Body: message.Conversion{VideoFID: fid, Username: email, Filename: "holiday.mp4"}.Encode(),
	})

	s.waitDone(t, tok, []string{job}, 2*time.Minute)
	s.waitMailed(t, email, []string{fid}, time.Minute)
	s.waitQueuesEmpty(t, time.Minute)
	// Both messages settled: one converted, one found it converted.
	testenv.Eventually(t, 30*time.Second, "both messages handled", func() bool {
		var done, already float64
		for _, p := range s.converters {
			d, _ := metric(p, "conversions_total", `result="done"`)
			a, _ := metric(p, "conversions_total", `result="already"`)
			done, already = done+d, already+a
		}
		return done == 1 && already == 1
	})
	var deferred float64
	for _, p := range s.converters {
		for _, result := range []string{"retry", "failed", "exhausted"} {
			if n, _ := metric(p, "conversions_total", `result="`+result+`"`); n != 0 {
				t.Errorf("%s (pid %d): %v conversions with result %s, want none", p.Name, p.PID(), n, result)
			}
		}
		n, _ := metric(p, "conversions_total", `result="deferred"`)
		deferred += n
	}
	if deferred < 1 {
		t.Error("no message was deferred: the two converters did not meet on the video")
	}
	// Every MP3 message the converters published has been settled by the
	// notification service: no second email is on its way.
	s.waitSettled(t, s.mp3Queue, s.converters, s.notifications, 30*time.Second)
	if n := s.mailedFIDs(t, email)[fid]; n != 1 {
		t.Errorf("%d emails for the MP3, want exactly 1", n)
	}
	if fc := gridCounts(t, s.mp3sDB); fc != (fileCounts{files: 1}) {
		t.Fatalf("mp3s bucket: %+v, want exactly one complete MP3 and no stray chunks", fc)
	}
	s.checkMP3(t, tok, fid, 4)
}
