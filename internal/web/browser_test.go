package web_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"go.mongodb.org/mongo-driver/v2/bson"

	"mp3converter/internal/testenv"
)

// TestBrowser drives the page in headless Chromium against the real suite:
// log in (wrong, then right), upload with the progress bar, the errors of a
// refused upload, the job list updating by itself, download (saved under
// the video's name), two files dropped at once, the in-page player,
// deleting a job, the email's link in a fresh browser, session expiry and
// logout. A screenshot of the
// job list is left in testout/.
func TestBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	const maxUpload = 8 << 20
	s := startStack(t, maxUpload)
	dir := t.TempDir()
	videoName := "clip été " + randomHex(3) + ".mp4"
	mp3Name := strings.TrimSuffix(videoName, ".mp4") + ".mp3" // what the page saves the MP3 as
	video := makeVideo(t, dir, videoName)
	home := s.gateway.URL() + "/"

	b := newTab(t, chrome)
	var fid string

	ok := t.Run("wrong password shows an error", func(t *testing.T) {
		b := b.in(t)
		b.do("open the page", 15*time.Second, chromedp.Navigate(home), chromedp.WaitVisible(chromedp.ID("login-form")))
		if b.visible("app-view") {
			t.Fatal("the app is shown before logging in")
		}
		b.do("log in with a wrong password", 10*time.Second,
			chromedp.SendKeys(chromedp.ID("email"), s.email),
			chromedp.SendKeys(chromedp.ID("password"), "not the password"),
			chromedp.Click(chromedp.ID("login-button")))
		b.waitFor("the error", `document.getElementById('login-msg').textContent !== ''`, 10*time.Second)
		if got := b.text("login-msg"); got != "Wrong email or password." {
			t.Errorf("login message %q, want %q", got, "Wrong email or password.")
		}
		if tok := mustEval[bool](b, `sessionStorage.length > 0`); tok {
			t.Error("something was stored after a failed login")
		}
	})
	ok = ok && t.Run("right password, with the keyboard", func(t *testing.T) {
		b := b.in(t)
		// The password is not ASCII: the page must send it as UTF-8.
		b.do("log in", 10*time.Second,
			chromedp.Clear(chromedp.ID("password")),
			chromedp.SendKeys(chromedp.ID("password"), s.password+"\n")) // Enter submits
		b.waitFor("the app", `!document.getElementById('app-view').hidden`, 10*time.Second)
		if b.visible("login-view") {
			t.Error("the login form is still shown")
		}
		if got, want := b.text("whoami"), "Signed in as "+s.email; got != want {
			t.Errorf("whoami %q, want %q", got, want)
		}
		token := mustEval[string](b, `sessionStorage.getItem('mp3converter.token') || ''`)
		if strings.Count(token, ".") != 2 {
			t.Fatalf("sessionStorage token %q is not a JWT", token)
		}
		if url := mustEval[string](b, `location.href`); strings.Contains(url, token) {
			t.Errorf("the token is in the URL %s", url)
		}
		b.waitFor("the empty list", `!document.getElementById('jobs-empty').hidden`, 5*time.Second)
	})
	ok = ok && t.Run("refused uploads are explained", func(t *testing.T) {
		b := b.in(t)
		text := filepath.Join(dir, "notes.txt")
		big := filepath.Join(dir, "huge.mp4")
		writeFile(t, text, []byte("not a video\n"))
		writeFile(t, big, make([]byte, maxUpload+64<<10))
		for _, tc := range []struct{ file, want string }{
			{text, "Not a video or audio file"},
			{big, "File too large (the limit is 8 MiB)."},
		} {
			b.do("upload "+tc.file, 10*time.Second,
				chromedp.SetUploadFiles(chromedp.ID("file"), []string{tc.file}),
				chromedp.Click(chromedp.ID("upload-button")))
			b.waitFor("the refusal", `document.getElementById('upload-msg').classList.contains('error')`, 15*time.Second)
			if got := b.text("upload-msg"); !strings.HasPrefix(got, tc.want) {
				t.Errorf("%s: message %q, want it to start with %q", filepath.Base(tc.file), got, tc.want)
			}
		}
	})
	ok = ok && t.Run("upload shows progress to 100 % and the job appears", func(t *testing.T) {
		b := b.in(t)
		b.do("choose the video", 10*time.Second, chromedp.SetUploadFiles(chromedp.ID("file"), []string{video}))
		// On loopback the upload would end in one progress event: throttle
		// it (about 1.5 s), so that the bar is seen moving.
		b.throttle(s.gateway.URL()+"/uploads/*", 1<<20)
		defer b.throttle("", 0)
		// Every value the bar's value attribute takes, as the page sets it
		// (recorded by the page, not sampled from here), consecutive
		// repeats dropped.
		mustEval[bool](b, `(() => {
			const bar = document.getElementById('upload-progress');
			window.progressSeen = [];
			new MutationObserver(() => {
				const n = Number.parseInt(bar.getAttribute('value') || '', 10);
				const seen = window.progressSeen;
				if (Number.isInteger(n) && seen[seen.length - 1] !== n) seen.push(n);
			}).observe(bar, {attributes: true, attributeFilter: ['value']});
			return true;
		})()`)
		b.do("upload", 10*time.Second, chromedp.Click(chromedp.ID("upload-button")))
		var seen []int
		if !testenv.Poll(30*time.Second, func() bool {
			if v, err := eval[[]int](b, `window.progressSeen`); err == nil {
				seen = v
			}
			return slices.Contains(seen, 100)
		}) {
			b.fail("the upload progress bar never reached 100 (values seen: %v)", seen)
		}
		t.Logf("progress values seen: %v", seen)
		if !slices.IsSorted(seen) {
			t.Errorf("the progress bar went backwards: %v", seen)
		}
		if !slices.ContainsFunc(seen, func(n int) bool { return n > 0 && n < 100 }) {
			t.Errorf("the progress bar jumped to 100 without showing progress: %v", seen)
		}
		if !b.visible("upload-progress") {
			t.Error("the progress bar is not shown")
		}
		if got := b.text("upload-percent"); got != "100 %" {
			t.Errorf("percentage %q, want 100 %%", got)
		}
		b.waitFor("the success message", `document.getElementById('upload-msg').classList.contains('ok')`, 30*time.Second)
		if got := b.text("upload-msg"); !strings.HasPrefix(got, "Uploaded "+videoName) {
			t.Errorf("upload message %q", got)
		}
		// The list refreshes by itself: the job appears without a reload.
		b.waitFor("the job in the list", fmt.Sprintf(
			`[...document.querySelectorAll('#jobs .job-name')].some(e => e.textContent === %q)`, videoName), 10*time.Second)
		fid = mustEval[string](b, `document.querySelector('#jobs .job').dataset.id`)
		if !regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(fid) {
			t.Fatalf("job id %q", fid)
		}
		status := mustEval[string](b, `document.querySelector('#jobs .job').dataset.status`)
		if status == "failed" {
			t.Fatalf("the job failed: %s", b.text("jobs"))
		}
	})
	if !ok {
		return
	}

	converted := t.Run("the job reaches done and the MP3 downloads", func(t *testing.T) {
		if s.converter == nil {
			t.Skip("cmd/converter/main.go does not exist yet: conversion and download not tested")
		}
		b := b.in(t)
		sel := fmt.Sprintf(`document.querySelector('#jobs .job[data-id=%q]')`, fid)
		b.waitFor("the job to be done", sel+`?.dataset.status === 'done'`, 40*time.Second)
		if got := mustEval[string](b, sel+`.querySelector('.job-status').textContent`); got != "Ready" {
			t.Errorf("status text %q, want Ready", got)
		}
		path := b.download("click Download", 20*time.Second,
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`.job[data-id=%q] .job-download`, fid))))
		checkMP3(t, path, mp3Name)
		b.waitFor("the download message", `document.getElementById('download-msg').classList.contains('ok')`, 5*time.Second)
	})

	t.Run("two files dropped: two jobs, a player, the video's name, delete", func(t *testing.T) {
		if s.converter == nil {
			t.Skip("cmd/converter/main.go does not exist yet: not tested")
		}
		b := b.in(t)
		names := []string{"drop one " + randomHex(3) + ".mp4", "drop two " + randomHex(3) + ".mp4"}
		var paths []string
		for _, n := range names {
			paths = append(paths, makeVideo(t, dir, n))
		}
		// The files reach the page through an input of the test's own; the
		// page gets them as a user's drop does, in a DataTransfer.
		mustEval[bool](b, `(() => {
			const i = document.createElement('input');
			i.type = 'file'; i.multiple = true; i.id = 'test-drop-files'; i.hidden = true;
			document.body.appendChild(i);
			return true;
		})()`)
		b.do("pick the files to drop", 10*time.Second, chromedp.SetUploadFiles(chromedp.ID("test-drop-files"), paths))
		type dropped struct {
			Files     int  `json:"files"`
			Dragging  bool `json:"dragging"`
			Prevented bool `json:"prevented"`
		}
		got := mustEval[dropped](b, `(() => {
			const input = document.getElementById('test-drop-files');
			const dt = new DataTransfer();
			for (const f of input.files) dt.items.add(f);
			input.remove();
			const zone = document.getElementById('drop-zone');
			zone.dispatchEvent(new DragEvent('dragenter', {dataTransfer: dt, bubbles: true, cancelable: true}));
			const dragging = zone.classList.contains('dragging');
			const prevented = !zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
			return {files: dt.files.length, dragging, prevented};
		})()`)
		if got.Files != 2 || !got.Dragging || !got.Prevented {
			t.Fatalf("drop: %+v, want 2 files, the zone highlighted, the drop taken by the page", got)
		}
		b.waitFor("both uploads", `document.querySelectorAll('#uploads .upload[data-state=done]').length === 2`, 30*time.Second)
		if rows := mustEval[[]string](b, `[...document.querySelectorAll('#uploads .upload')].map(r =>
			r.querySelector('.upload-name').textContent + ' ' + r.querySelector('.upload-progress').value)`); !slices.Equal(rows, []string{names[0] + " 100", names[1] + " 100"}) {
			t.Errorf("upload rows %q", rows)
		}
		if msg := b.text("upload-msg"); !strings.HasPrefix(msg, "Uploaded 2 files.") {
			t.Errorf("upload message %q", msg)
		}
		ids := make([]string, len(names))
		for i, n := range names {
			sel := fmt.Sprintf(`[...document.querySelectorAll('#jobs .job')].find(e => e.querySelector('.job-name').textContent === %q)`, n)
			b.waitFor(n+" to be done", sel+`?.dataset.status === 'done'`, 60*time.Second)
			ids[i] = mustEval[string](b, sel+`.dataset.id`)
		}
		if ids[0] == ids[1] {
			t.Fatalf("both files made job %s", ids[0])
		}
		job := func(i int) string { return fmt.Sprintf(`.job[data-id=%q]`, ids[i]) }
		jobJS := func(i int) string { return fmt.Sprintf(`document.querySelector('#jobs .job[data-id=%q]')`, ids[i]) }

		// The player: a Blob URL of the MP3, fetched with the token.
		b.do("click Listen", 5*time.Second, chromedp.Click(chromedp.CSS(job(0)+" .job-play")))
		audio := jobJS(0) + `?.querySelector('audio.job-audio')`
		b.waitFor("the player's metadata", `(a => a && a.controls && a.readyState >= 1 && Number.isFinite(a.duration) && a.duration > 0)(`+audio+`)`, 20*time.Second)
		duration := mustEval[float64](b, audio+`.duration`)
		if duration < 3 || duration > 5 {
			t.Errorf("the player says %.2f s, want about 4 s", duration)
		}
		if src := mustEval[string](b, audio+`.src`); !strings.HasPrefix(src, "blob:") {
			t.Errorf("the player's source %q, want a blob: URL", src)
		}
		mustEval[bool](b, audio+`.pause(), true`)

		// Download: the video's name with .mp3.
		want := strings.TrimSuffix(names[0], ".mp4") + ".mp3"
		path := b.download("click Download", 20*time.Second, chromedp.Click(chromedp.CSS(job(0)+" .job-download")))
		checkMP3(t, path, want)
		if got := mustEval[string](b, jobJS(1)+`.querySelector('.job-download').dataset.name`); got != strings.TrimSuffix(names[1], ".mp4")+".mp3" {
			t.Errorf("the second job downloads as %q", got)
		}

		// Delete: the rows go, and the API no longer knows the jobs.
		mp3s := make([]string, len(ids))
		for i := range ids {
			mp3s[i] = mustEval[string](b, jobJS(i)+`.querySelector('.job-download').dataset.fid`)
			b.do("click Delete", 5*time.Second, chromedp.Click(chromedp.CSS(job(i)+" .job-delete")))
			b.waitFor("the row to go", jobJS(i)+` === null`, 10*time.Second)
		}
		if got := b.text("download-msg"); got != "Deleted "+names[1]+"." {
			t.Errorf("message %q", got)
		}
		token := mustEval[string](b, `sessionStorage.getItem('mp3converter.token')`)
		for i, id := range ids {
			if st := httpStatus(t, "GET", s.gateway.URL()+"/jobs/"+id, token); st != 404 {
				t.Errorf("GET /jobs/%s after delete: %d, want 404", id, st)
			}
			if st := httpStatus(t, "GET", s.gateway.URL()+"/download?fid="+mp3s[i], token); st != 404 {
				t.Errorf("GET /download of %s after delete: %d, want 404", mp3s[i], st)
			}
		}
		// A poll of the list does not bring them back.
		time.Sleep(2500 * time.Millisecond)
		for i := range ids {
			if mustEval[bool](b, jobJS(i)+` !== null`) {
				t.Errorf("job %s is back in the list", ids[i])
			}
		}
		if !mustEval[bool](b, fmt.Sprintf(`document.querySelector('#jobs .job[data-id=%q]') !== null`, fid)) {
			t.Error("the first video's job went too")
		}
	})

	t.Run("a failed conversion shows its reason", func(t *testing.T) {
		if s.converter == nil {
			t.Skip("cmd/converter/main.go does not exist yet: failures not tested")
		}
		b := b.in(t)
		broken := filepath.Join(dir, "broken "+randomHex(3)+".mp4")
		noise := make([]byte, 64<<10)
		_, _ = rand.Read(noise)
		writeFile(t, broken, noise)
		b.do("upload a damaged video", 10*time.Second,
			chromedp.SetUploadFiles(chromedp.ID("file"), []string{broken}),
			chromedp.Click(chromedp.ID("upload-button")))
		sel := fmt.Sprintf(`[...document.querySelectorAll('#jobs .job')].find(e => e.querySelector('.job-name').textContent === %q)`, filepath.Base(broken))
		b.waitFor("the job to fail", sel+`?.dataset.status === 'failed'`, 30*time.Second)
		reason := mustEval[string](b, sel+`.querySelector('.job-error')?.textContent || ''`)
		if len(reason) < 10 {
			t.Errorf("the failed job shows the reason %q", reason)
		}
		t.Logf("reason shown: %s", reason)
		if mustEval[bool](b, sel+`.querySelector('.job-download') !== null`) {
			t.Error("a failed job has a Download button")
		}
	})

	t.Run("the email link downloads at once when logged in", func(t *testing.T) {
		if !converted {
			t.Skip("no MP3 (see the conversion subtest)")
		}
		b := b.in(t)
		path := b.download("open /?download=", 20*time.Second, chromedp.Navigate(home+"?download="+fid))
		checkMP3(t, path, mp3Name)
		b.waitFor("the parameter to go", `location.search === ''`, 5*time.Second)
		if !b.visible("app-view") {
			t.Error("the app is not shown after the download")
		}
	})

	t.Run("the email link in a fresh browser: login, then the file", func(t *testing.T) {
		if !converted {
			t.Skip("no MP3 (see the conversion subtest)")
		}
		link := home + "?download=" + fid
		if s.notification != nil {
			link = emailLink(t, s.email, home+"?download="+fid)
		} else {
			t.Log("cmd/notification/main.go does not exist yet: using the link the email would carry")
		}
		fresh := newTab(t, chrome).in(t)
		fresh.do("open the link", 15*time.Second, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("login-form")))
		if got := fresh.text("login-note"); got != "Log in to download your MP3." {
			t.Errorf("login note %q", got)
		}
		path := fresh.download("log in", 20*time.Second,
			chromedp.SendKeys(chromedp.ID("email"), s.email),
			chromedp.SendKeys(chromedp.ID("password"), s.password),
			chromedp.Click(chromedp.ID("login-button")))
		checkMP3(t, path, mp3Name)
		fresh.waitFor("the parameter to go", `location.search === ''`, 5*time.Second)
	})

	t.Run("screenshots of the job list", func(t *testing.T) {
		b := b.in(t)
		b.do("desktop size", 5*time.Second, chromedp.EmulateViewport(1100, 760))
		b.waitFor("the list", `document.querySelectorAll('#jobs .job').length > 0`, 5*time.Second)
		t.Logf("screenshot: %s", b.screenshot("web-jobs.png"))
		b.do("phone size", 5*time.Second, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
		if w := mustEval[int](b, `document.documentElement.scrollWidth`); w > 390 {
			t.Errorf("the page is %d px wide at a 390 px viewport: not readable on a phone", w)
		}
		t.Logf("screenshot: %s", b.screenshot("web-jobs-phone.png"))
		b.do("back to desktop size", 5*time.Second, chromedp.EmulateViewport(1100, 900))
	})

	// The retention sweeper deleted the MP3 (here only the job's
	// expired_at, as the sweeper leaves it): the list says Expired with
	// the date and offers no download.
	t.Run("an expired MP3 says so", func(t *testing.T) {
		if !converted {
			t.Skip("no MP3 (see the conversion subtest)")
		}
		b := b.in(t)
		ctx := context.Background()
		// As the converter's sweeper does it: through the job store, which
		// announces the change (the page follows the event stream).
		if err := s.jobs(t).MarkExpired(ctx, fid, time.Now()); err != nil {
			t.Fatal(err)
		}
		sel := fmt.Sprintf(`document.querySelector('#jobs .job[data-id=%q]')`, fid)
		b.waitFor("the job to show Expired", sel+`?.dataset.status === 'expired'`, 20*time.Second)
		if got := mustEval[string](b, sel+`.querySelector('.job-status').textContent`); got != "Expired" {
			t.Errorf("status text %q, want Expired", got)
		}
		if got := mustEval[string](b, sel+`.querySelector('.job-error')?.textContent || ''`); !strings.Contains(got, "The MP3 was deleted on") {
			t.Errorf("the expired job says %q", got)
		}
		if mustEval[bool](b, sel+`.querySelector('.job-download') !== null`) {
			t.Error("an expired job has a Download button")
		}
	})

	t.Run("the list follows a conversion live, from the event stream, not by polling", func(t *testing.T) {
		b := b.in(t)
		if !b.visible("app-view") {
			t.Skip("not logged in")
		}
		b.waitFor("the live stream", `document.getElementById('jobs').dataset.live === 'true'`, 15*time.Second)
		name := "live " + randomHex(3) + ".mp4"
		clip := makeVideo(t, dir, name)
		// From here on, count the page's GET /jobs.
		mustEval[bool](b, `performance.clearResourceTimings(), performance.setResourceTimingBufferSize(100000), true`)
		b.do("choose a video", 10*time.Second, chromedp.SetUploadFiles(chromedp.ID("file"), []string{clip}))
		b.do("upload", 10*time.Second, chromedp.Click(chromedp.ID("upload-button")))
		b.waitFor("its row done", fmt.Sprintf(`[...document.querySelectorAll('#jobs .job')].some(li =>
			li.querySelector('.job-name').textContent === %q && li.dataset.status === 'done')`, name), 60*time.Second)
		lists := mustEval[int](b, `performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname === '/jobs').length`)
		// One GET /jobs after the upload's answer; queued, converting and
		// done came from the stream.
		if lists > 1 {
			t.Errorf("the page read the list %d times while the job converted: it polled instead of following the stream", lists)
		}
	})

	t.Run("an upload cut by a gateway restart goes on from where it stopped", func(t *testing.T) {
		b := b.in(t)
		if !b.visible("app-view") {
			t.Skip("not logged in")
		}
		name := "noise " + randomHex(3) + ".mp4"
		noisy := makeNoisyVideo(t, dir, name)
		st, err := os.Stat(noisy)
		if err != nil {
			t.Fatal(err)
		}
		size := st.Size()
		// About 6 s at 1 MiB/s: time to kill the gateway half-way.
		b.throttle(s.gateway.URL()+"/uploads/*", 1<<20)
		defer b.throttle("", 0)
		b.do("choose the noisy video", 10*time.Second, chromedp.SetUploadFiles(chromedp.ID("file"), []string{noisy}))
		b.do("upload", 10*time.Second, chromedp.Click(chromedp.ID("upload-button")))
		// The gateway saves what it stored every 4 MiB: wait for the first.
		var saved struct {
			ID     bson.ObjectID `bson:"_id"`
			Offset int64         `bson:"offset"`
			Done   bool          `bson:"done"`
		}
		partials := s.videosDB.Collection("fs.partial")
		if !testenv.Poll(30*time.Second, func() bool {
			err := partials.FindOne(context.Background(), bson.D{{Key: "filename", Value: name}}).Decode(&saved)
			return err == nil && saved.Offset > 0
		}) {
			b.fail("the gateway never saved part of the upload")
		}
		s.gateway.Kill()
		// Every progress value the page shows from now on.
		mustEval[bool](b, `(() => {
			const bar = document.getElementById('upload-progress');
			window.resumedSeen = [];
			new MutationObserver(() => window.resumedSeen.push(Number.parseInt(bar.getAttribute('value') || '', 10)))
				.observe(bar, {attributes: true, attributeFilter: ['value']});
			return true;
		})()`)
		atKill := saved.Offset
		s.gateway.Restart(s.gatewayEnv)
		b.waitFor("the upload to end", `document.getElementById('upload-msg').classList.contains('ok') ||
			document.getElementById('upload-msg').classList.contains('error')`, 90*time.Second)
		if got := b.text("upload-msg"); !strings.HasPrefix(got, "Uploaded "+name) {
			t.Fatalf("after the restart: %q", got)
		}
		if err := partials.FindOne(context.Background(), bson.D{{Key: "_id", Value: saved.ID}}).Decode(&saved); err != nil || !saved.Done || saved.Offset != size {
			t.Fatalf("the upload's record after the restart: %+v, %v; want done at %d", saved, err, size)
		}
		// Resumed, not started again: the bar never went back below what
		// the server had when it was killed.
		seen := mustEval[[]int](b, `window.resumedSeen`)
		floor := int(atKill * 100 / size)
		t.Logf("server had %d of %d bytes at the kill (%d %%); progress after: %v", atKill, size, floor, seen)
		if slices.ContainsFunc(seen, func(n int) bool { return n < floor }) {
			t.Errorf("the upload started again from the beginning: progress %v after the server had %d %%", seen, floor)
		}
		b.waitFor("its job in the list", fmt.Sprintf(
			`[...document.querySelectorAll('#jobs .job-name')].some(e => e.textContent === %q)`, name), 20*time.Second)
		// The restart broke the event stream too: the page polled
		// meanwhile, and opens the stream again.
		b.waitFor("the live stream again", `document.getElementById('jobs').dataset.live === 'true'`, 70*time.Second)
	})

	t.Run("an expired session goes back to the login form", func(t *testing.T) {
		b := b.in(t)
		if !b.visible("app-view") {
			t.Skip("not logged in")
		}
		// A token auth rejects (403) stands for an expired one; the next
		// poll of /jobs must notice.
		mustEval[bool](b, `sessionStorage.setItem('mp3converter.token', 'e30.e30.x'), true`)
		// The event stream, opened with the good token, goes on: the page
		// learns of the bad one at its next request (here: the tab coming
		// back to the front reads the list).
		mustEval[bool](b, `document.dispatchEvent(new Event('visibilitychange')), true`)
		b.waitFor("the login form", `!document.getElementById('login-view').hidden`, 6*time.Second)
		if got := b.text("login-msg"); got != "Your session has expired, please log in again." {
			t.Errorf("message %q", got)
		}
		if mustEval[bool](b, `sessionStorage.getItem('mp3converter.token') !== null`) {
			t.Error("the expired token is still stored")
		}
	})

	t.Run("logout", func(t *testing.T) {
		b := b.in(t)
		b.do("log in again", 10*time.Second,
			chromedp.Clear(chromedp.ID("email")),
			chromedp.SendKeys(chromedp.ID("email"), s.email),
			chromedp.SendKeys(chromedp.ID("password"), s.password+"\n"))
		b.waitFor("the app", `!document.getElementById('app-view').hidden`, 10*time.Second)
		b.waitFor("the job list", `document.querySelectorAll('#jobs .job').length > 0`, 5*time.Second)
		b.do("log out", 5*time.Second, chromedp.Click(chromedp.ID("logout")))
		b.waitFor("the login form", `!document.getElementById('login-view').hidden`, 5*time.Second)
		if mustEval[int](b, `sessionStorage.length`) != 0 {
			t.Error("sessionStorage is not empty after logout")
		}
		if n := mustEval[int](b, `document.querySelectorAll('#jobs .job').length`); n != 0 {
			t.Errorf("%d jobs still in the page after logout", n)
		}
	})

	t.Run("the CSP refuses inline script", func(t *testing.T) {
		b := b.in(t)
		const probe = "window.__cspProbe = 1"
		sum := sha256.Sum256([]byte(probe))
		b.allowPageError("sha256-" + base64.StdEncoding.EncodeToString(sum[:])) // the violation we cause
		got := mustEval[string](b, fmt.Sprintf(`new Promise(resolve => {
			document.addEventListener('securitypolicyviolation', e => resolve('refused by ' + e.effectiveDirective), {once: true});
			const s = document.createElement('script');
			s.textContent = %q;
			document.head.appendChild(s);
			setTimeout(() => resolve(window.__cspProbe === 1 ? 'ran' : 'no violation reported'), 2000);
		})`, probe), chromedp.EvalAwaitPromise)
		if !strings.HasPrefix(got, "refused by script-src") {
			t.Errorf("an inline script injected into the page: %s, want refused by script-src", got)
		}
	})

	for _, p := range []*testenv.Proc{s.gateway, s.auth} {
		if out := p.Output(); strings.Contains(out, "Bearer ") || strings.Contains(out, "eyJ") {
			t.Errorf("%s logged a token", p.Name)
		}
	}
}

// checkMP3 checks a downloaded MP3: saved as want (the video's name with
// .mp3), of some size, and an MP3 by ffprobe.
func checkMP3(t *testing.T, path, want string) {
	t.Helper()
	if got := filepath.Base(path); got != want {
		t.Errorf("saved as %s, want %s", got, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("downloaded file: %v", err)
	}
	if st.Size() < 10<<10 {
		t.Errorf("downloaded file is only %d bytes", st.Size())
	}
	if codec := audioCodec(t, path); codec != "mp3" {
		t.Errorf("ffprobe: audio codec %q, want mp3", codec)
	}
}

// httpStatus is the status the gateway answers to method url with the
// bearer token.
func httpStatus(t *testing.T, method, url, token string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// emailLink waits for the notification email that carries want (the link
// to one MP3) and returns the link as the email has it. Other emails to the
// same user (a failed conversion) may arrive first.
func emailLink(t *testing.T, to, want string) string {
	t.Helper()
	mp := testenv.MailpitShared(t)
	re := regexp.MustCompile(regexp.QuoteMeta(want) + `\b`)
	var link string
	var texts []string
	if !testenv.Poll(30*time.Second, func() bool {
		texts = texts[:0]
		for _, sum := range mp.To(t, to) {
			msg := mp.Message(t, sum.ID)
			if link = re.FindString(msg.Text); link != "" {
				return true
			}
			texts = append(texts, msg.Subject+"\n"+msg.Text)
		}
		return false
	}) {
		t.Fatalf("no email to %s links to %s; the emails:\n%s", to, want, strings.Join(texts, "\n---\n"))
	}
	return link
}
