package e2e

import (
	"maps"
	"slices"
	"testing"
	"time"

	"mp3converter/internal/testenv"
)

// Every binary declares, at start and after every reconnection, the queues
// it publishes to or consumes, so that the original's consumers (which
// crash with NOT_FOUND on a missing queue) may start against a fresh broker
// before anything was uploaded or converted. Besides the suite (whose
// consumers declared their queues before this change too), a gateway and a
// converter are started alone on queues nobody else uses: the gateway only
// publishes VIDEO_QUEUE, the converter only publishes MP3_QUEUE.
func TestQueuesDeclaredAtStart(t *testing.T) {
	t.Parallel()
	s := startSuite(t)
	gwVideo := testenv.Queue(t, s.amqpURL, "e2edeclgwvideo")
	convVideo := testenv.Queue(t, s.amqpURL, "e2edeclconvvideo")
	convMP3 := testenv.Queue(t, s.amqpURL, "e2edeclconvmp3")
	gw := testenv.Start(t, "gateway-declare", testenv.Binary(t, "gateway"), testenv.FreePort(t),
		s.envWith(map[string]string{"VIDEO_QUEUE": gwVideo}))
	conv := s.startConverter(t, map[string]string{"VIDEO_QUEUE": convVideo, "MP3_QUEUE": convMP3})
	procs := []*testenv.Proc{s.gateway, s.converter, s.notification, gw, conv}

	queues := map[string]string{ // queue → who must declare it
		s.videoQueue:           "gateway (publishes), converter (consumes)",
		s.videoQueue + ".dead": "converter (dead letters of its queue)",
		s.mp3Queue:             "converter (publishes), notification (consumes)",
		s.mp3Queue + ".dead":   "notification (dead letters of its queue)",
		gwVideo:                "the lone gateway (publishes)",
		convVideo:              "the lone converter (consumes)",
		convVideo + ".dead":    "the lone converter (dead letters of its queue)",
		convMP3:                "the lone converter (publishes)",
	}
	check := func(when string) {
		t.Helper()
		for _, p := range procs {
			testenv.Eventually(t, 30*time.Second, p.Name+" ready "+when, func() bool { return ready(p) })
		}
		// Ready means declared: no waiting for the queues.
		for q, who := range queues {
			if _, ok := testenv.QueueDepth(t, s.amqpURL, q); !ok {
				t.Errorf("%s: queue %s does not exist; declared by %s", when, q, who)
			}
		}
	}
	check("at start, before any upload")
	for q := range queues {
		if n := s.queueDepth(t, q); n != 0 {
			t.Errorf("queue %s holds %d messages before any upload", q, n)
		}
	}

	// A fresh broker in place of the old one: the connections drop, the
	// queues are gone, the broker comes back.
	s.rabbit.Down()
	for _, p := range procs {
		testenv.Eventually(t, 15*time.Second, p.Name+" notices the broker is gone", func() bool { return !ready(p) })
	}
	testenv.DeleteQueue(t, s.amqpURL, slices.Collect(maps.Keys(queues))...)
	s.rabbit.Up()
	check("after the broker came back without its queues")
	alive(t, procs...)
}
