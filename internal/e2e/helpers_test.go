package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"mp3converter/internal/mq"
	"mp3converter/internal/testenv"
)

// realtimeFFmpeg returns an ffmpeg that reads its input at the input's
// native rate (-re): a conversion takes as long as the clip lasts, so a test
// can act while one is in flight without needing long (slow to make) videos.
func realtimeFFmpeg(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ffmpeg-realtime")
	script := "#!/bin/sh\nexec '" + testenv.Getenv(t, "FFMPEG_PATH") + "' -re \"$@\"\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fileCounts looks into a GridFS bucket "fs" directly: files is the number
// of visible files; incomplete those whose chunks don't add up to their
// length (a half-written file that is visible); strays the number of files
// ids that have chunks but no files document (the leftovers of a writer that
// died, invisible to users).
type fileCounts struct{ files, incomplete, strays int }

func gridCounts(t *testing.T, db *mongo.Database) fileCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type fileDoc struct {
		ID        bson.ObjectID `bson:"_id"`
		Length    int64         `bson:"length"`
		ChunkSize int64         `bson:"chunkSize"`
	}
	var files []fileDoc
	cur, err := db.Collection("fs.files").Find(ctx, bson.D{})
	if err != nil {
		t.Fatalf("list fs.files: %v", err)
	}
	if err := cur.All(ctx, &files); err != nil {
		t.Fatalf("list fs.files: %v", err)
	}
	chunks := map[bson.ObjectID]int64{}
	cur, err = db.Collection("fs.chunks").Find(ctx, bson.D{},
		options.Find().SetProjection(bson.D{{Key: "files_id", Value: 1}, {Key: "n", Value: 1}}))
	if err != nil {
		t.Fatalf("list fs.chunks: %v", err)
	}
	for cur.Next(ctx) {
		var c struct {
			FilesID bson.ObjectID `bson:"files_id"`
		}
		if err := cur.Decode(&c); err != nil {
			t.Fatalf("decode chunk: %v", err)
		}
		chunks[c.FilesID]++
	}
	if err := cur.Err(); err != nil {
		t.Fatalf("list fs.chunks: %v", err)
	}
	var fc fileCounts
	fc.files = len(files)
	for _, f := range files {
		want := int64(0)
		if f.ChunkSize > 0 {
			want = (f.Length + f.ChunkSize - 1) / f.ChunkSize
		}
		if chunks[f.ID] != want {
			fc.incomplete++
		}
		delete(chunks, f.ID)
	}
	fc.strays = len(chunks)
	return fc
}

// mp3Count is the number of MP3s stored (visible files in the mp3s bucket).
func (s *suite) mp3Count(t *testing.T) int { return gridCounts(t, s.mp3sDB).files }

// mailedFIDs returns, for the MP3-ready emails that reached addr, how many
// arrived per MP3 id. The notification service gives each such email the
// Message-ID mp3-<fid>@…; the body's "mp3 file_id: <fid>" line is checked by
// TestUploadConvertEmailDownload.
func (s *suite) mailedFIDs(t *testing.T, addr string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, m := range s.mail.To(t, addr) {
		if fid, ok := mp3FIDOfMessageID(m.MessageID); ok {
			out[fid]++
		}
	}
	return out
}

func mp3FIDOfMessageID(id string) (string, bool) {
	id = strings.Trim(id, "<>")
	if !strings.HasPrefix(id, "mp3-") || len(id) < 4+24 {
		return "", false
	}
	return id[4 : 4+24], true
}

// waitMailed waits until every fid has reached addr by email.
func (s *suite) waitMailed(t *testing.T, addr string, fids []string, timeout time.Duration) map[string]int {
	t.Helper()
	var got map[string]int
	testenv.Eventually(t, timeout, fmt.Sprintf("every MP3 of %v emailed to %s", fids, addr), func() bool {
		got = s.mailedFIDs(t, addr)
		for _, f := range fids {
			if got[f] == 0 {
				return false
			}
		}
		return true
	})
	return got
}

// waitDone waits for each job to be done with its MP3 (or fails the test
// with the job as it is).
func (s *suite) waitDone(t *testing.T, tok string, jobPaths []string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, p := range jobPaths {
		j := s.job(t, tok, p, "done", max(time.Until(deadline), time.Second))
		if j["status"] != "done" || j["mp3_fid"] != path.Base(p) {
			t.Fatalf("job %s = %v, want done with mp3_fid %s", p, j, path.Base(p))
		}
	}
}

// waitQueuesEmpty waits until the suite's queues hold no ready message, and
// checks that nothing was dead-lettered. A message delivered and not yet
// acked is not counted (the broker reports only ready messages to a
// passive declare): to know that every message was settled for good, see
// waitSettled.
func (s *suite) waitQueuesEmpty(t *testing.T, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, "queues empty", func() bool {
		return s.queueDepth(t, s.videoQueue)+s.queueDepth(t, s.mp3Queue) == 0
	})
	for _, q := range []string{s.videoQueue + ".dead", s.mp3Queue + ".dead"} {
		if n := s.queueDepth(t, q); n != 0 {
			t.Errorf("dead-letter queue %s holds %d messages", q, n)
		}
	}
}

// waitSettled waits until every message that producers published to queue
// (mq_messages_published_total, confirmed) has been settled for good by one
// of consumers: acked, failed permanently or dead-lettered
// (mq_messages_handled_total). Nothing more comes of those messages then:
// no redelivery, no retry, no second email, so a test can count what they
// caused without waiting "long enough". Retries a consumer republishes are
// its own, not the producers': each message is counted once on each side.
// Counters start again with their process: only for processes that were
// not restarted.
func (s *suite) waitSettled(t *testing.T, queue string, producers, consumers []*testenv.Proc, timeout time.Duration) {
	t.Helper()
	q := `queue="` + queue + `"`
	var published, settled float64
	testenv.Eventually(t, timeout, "every message published to "+queue+" settled for good", func() bool {
		published, settled = 0, 0
		for _, p := range producers {
			n, _ := metric(p, "mq_messages_published_total", q, `result="ok"`) // absent: none yet
			published += n
		}
		for _, p := range consumers {
			for _, o := range []string{mq.OutcomeAcked, mq.OutcomeFailed, mq.OutcomeDeadLettered} {
				n, _ := metric(p, "mq_messages_handled_total", q, `outcome="`+o+`"`)
				settled += n
			}
		}
		return published > 0 && settled >= published
	})
	t.Logf("%s: %v messages published, %v settled", queue, published, settled)
}

// jobStatus is GET /jobs/{id}'s status ("" when it cannot be read).
func (s *suite) jobStatus(tok, jobPath string) (status string, progress float64) {
	code, b, err := s.tryGet(tok, jobPath)
	if err != nil || code != 200 {
		return "", 0
	}
	var j struct {
		Status   string
		Progress float64
	}
	if json.Unmarshal(b, &j) != nil {
		return "", 0
	}
	return j.Status, j.Progress
}

// ready reports whether p's /readyz answers 200.
func ready(p *testenv.Proc) bool {
	resp, err := client.Get(p.OpsURL() + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// metric sums the samples of a Prometheus metric from p's /metrics whose
// labels contain every one of the given label pairs (`result="sent"`).
func metric(p *testenv.Proc, name string, labels ...string) (float64, error) {
	resp, err := client.Get(p.OpsURL() + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s /metrics: %s", p.Name, resp.Status)
	}
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		series := line[:sp]
		n, lbl, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(lbl, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%s /metrics: no %s%v", p.Name, name, labels)
	}
	return sum, nil
}

// alive fails the test if a process has exited.
func alive(t *testing.T, procs ...*testenv.Proc) {
	t.Helper()
	for _, p := range procs {
		if p.ExitCode() != -1 {
			t.Errorf("%s exited (code %d): it should have ridden out the fault", p.Name, p.ExitCode())
		}
	}
}

// percentile of sorted durations (nearest rank).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func sortDurations(d []time.Duration) []time.Duration {
	out := append([]time.Duration(nil), d...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
