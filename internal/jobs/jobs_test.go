package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/testenv"
)

func newStore(t *testing.T) (*Store, context.Context) {
	t.Helper()
	s, err := NewStore(testenv.Mongo(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return s, ctx
}

func newJob(user string, created time.Time) Job {
	id := bson.NewObjectID().Hex()
	return Job{ID: id, Username: user, Filename: "v.mp4", VideoFID: id, CreatedAt: created}
}

func TestCreateGetList(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	var alice []Job
	for i := range 5 {
		j := newJob("alice@example.com", base.Add(time.Duration(i)*time.Minute))
		if err := s.Create(ctx, j); err != nil {
			t.Fatal(err)
		}
		alice = append(alice, j)
	}
	bob := newJob("bob@example.com", base.Add(time.Hour))
	if err := s.Create(ctx, bob); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, alice[0]); !errors.Is(err, ErrExists) {
		t.Errorf("create twice: %v, want ErrExists", err)
	}

	got, err := s.Get(ctx, alice[2].ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != Queued || got.Progress != 0 || got.MP3FID != nil || got.Username != "alice@example.com" ||
		got.VideoFID != alice[2].ID || got.Filename != "v.mp4" || !got.CreatedAt.Equal(alice[2].CreatedAt) || !got.UpdatedAt.Equal(alice[2].CreatedAt) {
		t.Errorf("get = %+v", got)
	}

	list, err := s.List(ctx, "alice@example.com", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 {
		t.Fatalf("alice has %d jobs, want 5", len(list))
	}
	for i, j := range list {
		if want := alice[4-i].ID; j.ID != want {
			t.Errorf("list[%d] = %s, want %s (newest first)", i, j.ID, want)
		}
	}
	if list, err := s.List(ctx, "alice@example.com", 2, ""); err != nil || len(list) != 2 || list[0].ID != alice[4].ID {
		t.Errorf("list with limit 2 = %v, %v", list, err)
	}
	if list, err := s.List(ctx, "bob@example.com", 10, ""); err != nil || len(list) != 1 || list[0].ID != bob.ID {
		t.Errorf("bob's list = %v, %v", list, err)
	}
	if list, err := s.List(ctx, "carol@example.com", 10, ""); err != nil || list == nil || len(list) != 0 {
		t.Errorf("carol's list = %#v, %v; want an empty slice", list, err)
	}

	// Pages: each starts after the last job of the one before, also across
	// jobs created in the same millisecond.
	twin := newJob("alice@example.com", alice[2].CreatedAt)
	if err := s.Create(ctx, twin); err != nil {
		t.Fatal(err)
	}
	all, err := s.List(ctx, "alice@example.com", 0, "")
	if err != nil || len(all) != 6 {
		t.Fatalf("alice's list = %v, %v; want 6", all, err)
	}
	var paged []string
	for before := ""; ; {
		page, err := s.List(ctx, "alice@example.com", 2, before)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page {
			paged = append(paged, j.ID)
		}
		if len(page) < 2 {
			break
		}
		before = page[len(page)-1].ID
	}
	if len(paged) != len(all) {
		t.Fatalf("paged %v, want %d jobs", paged, len(all))
	}
	for i := range all {
		if paged[i] != all[i].ID {
			t.Fatalf("paged %v, want the order of the whole list", paged)
		}
	}
	if _, err := s.List(ctx, "bob@example.com", 2, alice[1].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("bob paging after alice's job: %v, want ErrNotFound", err)
	}

	if err := s.Delete(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, bob.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("get deleted: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, bob.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v, want ErrNotFound", err)
	}
}

func TestTransitions(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	type step struct {
		op   string // progress N, done, failed
		pct  int
		want Status
		prog int
		err  string
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"converts then done", []step{{"progress", 10, Converting, 10, ""}, {"progress", 60, Converting, 60, ""}, {"done", 0, Done, 100, ""}}},
		{"progress clamped", []step{{"progress", 150, Converting, 100, ""}, {"progress", -5, Converting, 0, ""}}},
		{"progress after done is a no-op", []step{{"done", 0, Done, 100, ""}, {"progress", 30, Done, 100, ""}}},
		{"failed after done is a no-op", []step{{"done", 0, Done, 100, ""}, {"failed", 0, Done, 100, ""}}},
		{"failed keeps progress, then ignores progress", []step{{"progress", 40, Converting, 40, ""}, {"failed", 0, Failed, 40, "no audio track"}, {"progress", 50, Failed, 40, "no audio track"}}},
		{"done after failed (a retry succeeded)", []step{{"failed", 0, Failed, 0, "no audio track"}, {"done", 0, Done, 100, ""}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := newJob("alice@example.com", time.Time{})
			if err := s.Create(ctx, j); err != nil {
				t.Fatal(err)
			}
			created, err := s.Get(ctx, j.ID)
			if err != nil {
				t.Fatal(err)
			}
			mp3 := bson.NewObjectID().Hex()
			for i, st := range c.steps {
				var err error
				switch st.op {
				case "progress":
					err = s.Progress(ctx, j.ID, st.pct)
				case "done":
					err = s.Done(ctx, j.ID, mp3)
				case "failed":
					err = s.Failed(ctx, j.ID, "no audio track")
				}
				if err != nil {
					t.Fatalf("step %d %s: %v", i, st.op, err)
				}
				got, err := s.Get(ctx, j.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.Status != st.want || got.Progress != st.prog || got.Error != st.err {
					t.Errorf("after step %d %s: status %s, progress %d, error %q; want %s, %d, %q",
						i, st.op, got.Status, got.Progress, got.Error, st.want, st.prog, st.err)
				}
				if (got.Status == Done) != (got.MP3FID != nil && *got.MP3FID == mp3) {
					t.Errorf("after step %d: status %s with mp3_fid %v", i, got.Status, got.MP3FID)
				}
				if got.UpdatedAt.Before(created.CreatedAt) || !got.CreatedAt.Equal(created.CreatedAt) {
					t.Errorf("times: created %v updated %v", got.CreatedAt, got.UpdatedAt)
				}
			}
		})
	}

	t.Run("missing job", func(t *testing.T) {
		id := bson.NewObjectID().Hex()
		for name, err := range map[string]error{
			"progress": s.Progress(ctx, id, 5),
			"done":     s.Done(ctx, id, "x"),
			"failed":   s.Failed(ctx, id, "x"),
		} {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: %v, want ErrNotFound", name, err)
			}
		}
	})
}

// Finish marks a job done with an MP3 unless it is done with that MP3
// already: a repeat writes nothing (updated_at stays).
func TestFinish(t *testing.T) {
	t.Parallel()
	s, ctx := newStore(t)
	clock := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	s.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	m1, m2 := bson.NewObjectID().Hex(), bson.NewObjectID().Hex()
	get := func(id string) Job {
		t.Helper()
		j, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	is := func(j Job, mp3 string) bool {
		return j.Status == Done && j.Progress == 100 && j.Error == "" && j.MP3FID != nil && *j.MP3FID == mp3
	}
	for _, before := range []string{"queued", "converting", "failed", "done with another mp3"} {
		t.Run("from "+before, func(t *testing.T) {
			j := newJob("alice@example.com", time.Time{})
			if err := s.Create(ctx, j); err != nil {
				t.Fatal(err)
			}
			var err error
			switch before {
			case "converting":
				err = s.Progress(ctx, j.ID, 40)
			case "failed":
				err = s.Failed(ctx, j.ID, "no audio track")
			case "done with another mp3":
				err = s.Done(ctx, j.ID, m2)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Finish(ctx, j.ID, m1); err != nil {
				t.Fatalf("Finish: %v", err)
			}
			done := get(j.ID)
			if !is(done, m1) {
				t.Fatalf("after Finish: %+v, want done with %s", done, m1)
			}
			if err := s.Finish(ctx, j.ID, m1); err != nil {
				t.Fatalf("Finish again: %v", err)
			}
			if again := get(j.ID); !is(again, m1) || !again.UpdatedAt.Equal(done.UpdatedAt) {
				t.Errorf("Finish again wrote: updated_at %v → %v (%+v)", done.UpdatedAt, again.UpdatedAt, again)
			}
		})
	}
	if err := s.Finish(ctx, bson.NewObjectID().Hex(), m1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Finish of a missing job: %v, want ErrNotFound", err)
	}
}

func TestJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	mp3 := "65a000000000000000000001"
	for _, c := range []struct {
		job  Job
		want string
	}{
		{Job{ID: "a", Username: "u@x", Filename: "v.mp4", Status: Queued, VideoFID: "a", CreatedAt: at, UpdatedAt: at},
			`{"id":"a","filename":"v.mp4","status":"queued","progress":0,"video_fid":"a","mp3_fid":null,"error":"","created_at":"2025-01-02T03:04:05Z","updated_at":"2025-01-02T03:04:05Z","expired_at":null}`},
		{Job{ID: "a", Username: "u@x", Status: Done, Progress: 100, VideoFID: "a", MP3FID: &mp3, CreatedAt: at, UpdatedAt: at},
			fmt.Sprintf(`{"id":"a","filename":"","status":"done","progress":100,"video_fid":"a","mp3_fid":%q,"error":"","created_at":"2025-01-02T03:04:05Z","updated_at":"2025-01-02T03:04:05Z","expired_at":null}`, mp3)},
		{Job{ID: "a", Username: "u@x", Status: Done, Progress: 100, VideoFID: "a", MP3FID: &mp3, CreatedAt: at, UpdatedAt: at, ExpiredAt: &at},
			fmt.Sprintf(`{"id":"a","filename":"","status":"done","progress":100,"video_fid":"a","mp3_fid":%q,"error":"","created_at":"2025-01-02T03:04:05Z","updated_at":"2025-01-02T03:04:05Z","expired_at":"2025-01-02T03:04:05Z"}`, mp3)},
	} {
		got, err := json.Marshal(c.job)
		if err != nil || string(got) != c.want {
			t.Errorf("json = %s, %v\nwant %s", got, err, c.want)
		}
	}
}
