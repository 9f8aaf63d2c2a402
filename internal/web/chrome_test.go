package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"mp3converter/internal/testenv"
)

// chromiumPath returns the browser to drive: CHROMIUM_PATH, else Debian's
// /usr/bin/chromium. Without one the test skips, or fails when the stack
// promised everything (MP3_STACK=1).
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CHROMIUM_PATH")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("MP3_STACK") == "1" {
			t.Fatalf("no Chromium at %s although MP3_STACK=1 (install Debian's chromium or set CHROMIUM_PATH): %v", p, err)
		}
		t.Skipf("no Chromium at %s (set CHROMIUM_PATH): browser test skipped", p)
	}
	return p
}

// tab is one headless Chromium (its own process and profile directory, so
// nothing is shared with another tab) with one page, whose downloads go to
// Downloads.
type tab struct {
	t         *testing.T
	ctx       context.Context
	Downloads string
	errs      *pageErrors
}

// pageErrors are the uncaught exceptions and CSP violations of the page.
type pageErrors struct {
	mu    sync.Mutex
	list  []string
	allow []string // substrings of messages a test causes on purpose
}

func (e *pageErrors) add(msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.allow {
		if strings.Contains(msg, a) {
			return
		}
	}
	e.list = append(e.list, msg)
}

// allowPageError accepts console errors that contain substr.
func (b *tab) allowPageError(substr string) {
	b.errs.mu.Lock()
	defer b.errs.mu.Unlock()
	b.errs.allow = append(b.errs.allow, substr)
}

// in returns the tab for use in the (sub)test t: its failures stop t.
func (b *tab) in(t *testing.T) *tab {
	c := *b
	c.t = t
	return &c
}

// newTab starts a fresh browser. It is closed in t.Cleanup.
func newTab(t *testing.T, execPath string) *tab {
	t.Helper()
	profile := t.TempDir()
	downloads := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(execPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1100, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	// Registered after TempDir: the browser is gone before its profile is removed.
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })

	tb := &tab{t: t, ctx: ctx, Downloads: downloads, errs: &pageErrors{}}
	console := chromedp.Console(ctx) // starts the browser; subscribes from the first page on
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleException || strings.Contains(m.Text, "Content Security Policy") {
				tb.errs.add(string(m.Type) + ": " + m.Text)
			}
		}
	}()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", execPath, err)
	}
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads, EventsEnabled: new(true),
	}); err != nil {
		t.Fatalf("set download behaviour: %v", err)
	}
	t.Cleanup(func() {
		tb.errs.mu.Lock()
		defer tb.errs.mu.Unlock()
		for _, e := range tb.errs.list {
			t.Errorf("page error: %s", e)
		}
	})
	return tb
}

// do runs actions with a bound, failing the test on error.
func (b *tab) do(what string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page and decodes its value.
// DevTools evaluation is not subject to the page's CSP; the page's own
// code is (chromedp.Poll builds a Function, which the CSP forbids, so the
// waits below poll from Go).
func eval[T any](b *tab, expr string, opts ...chromedp.EvaluateOption) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
}

func mustEval[T any](b *tab, expr string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	v, err := eval[T](b, expr, opts...)
	if err != nil {
		b.fail("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition until it is true.
func (b *tab) waitFor(what, cond string, timeout time.Duration) {
	b.t.Helper()
	var lastErr error
	if !testenv.Poll(timeout, func() bool {
		ok, err := eval[bool](b, "!!("+cond+")")
		lastErr = err
		return err == nil && ok
	}) {
		b.fail("waited %s for %s (%s); last error: %v", timeout, what, cond, lastErr)
	}
}

// text returns the trimmed text of the element with this id ("" if none).
func (b *tab) text(id string) string {
	b.t.Helper()
	return mustEval[string](b, fmt.Sprintf(`(document.getElementById(%q)?.textContent || '').trim()`, id))
}

// visible reports whether the element with this id is shown.
func (b *tab) visible(id string) bool {
	b.t.Helper()
	return mustEval[bool](b, fmt.Sprintf(`(() => { const e = document.getElementById(%q); return !!e && e.getClientRects().length > 0; })()`, id))
}

// throttle limits the upload speed of requests to url (an absolute URL
// pattern) to bytesPerSec; an empty url lifts every limit.
func (b *tab) throttle(url string, bytesPerSec float64) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	var rules []*network.Conditions
	if url != "" {
		rules = append(rules, &network.Conditions{URLPattern: url, UploadThroughput: bytesPerSec, DownloadThroughput: -1})
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		b.fail("network enable: %v", err)
	}
	if _, err := chromedp.Call(ctx, network.EmulateNetworkConditionsByRule,
		network.EmulateNetworkConditionsByRuleParams{MatchedNetworkConditions: rules}); err != nil {
		b.fail("throttle %s: %v", url, err)
	}
}

// download runs the trigger and waits for the browser to finish the
// download it causes; it returns the saved file.
func (b *tab) download(what string, timeout time.Duration, trigger ...chromedp.Action[chromedp.Void]) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	began := chromedp.BrowserEvents(ctx, browser.DownloadWillBegin)
	progress := chromedp.BrowserEvents(ctx, browser.DownloadProgress)
	if len(trigger) > 0 {
		if err := chromedp.Do(ctx, trigger...); err != nil {
			b.fail("%s: %v", what, err)
		}
	}
	var name, guid string
	for ev, err := range began {
		if err != nil {
			b.fail("%s: no download began: %v", what, err)
		}
		name, guid = ev.SuggestedFilename, ev.GUID
		break
	}
	for ev, err := range progress {
		if err != nil {
			b.fail("%s: download of %s did not complete: %v", what, name, err)
		}
		if ev.GUID != guid {
			continue
		}
		switch ev.State {
		case browser.DownloadProgressStateCompleted:
			p := ev.FilePath
			if p == "" {
				p = filepath.Join(b.Downloads, name)
			}
			return p
		case browser.DownloadProgressStateCanceled:
			b.fail("%s: download of %s was cancelled", what, name)
		}
	}
	b.fail("%s: download events ended", what)
	return ""
}

// screenshot saves a PNG of the viewport under testout/ at the repository root.
func (b *tab) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	dir := filepath.Join("..", "..", "testout")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return ""
	}
	abs, _ := filepath.Abs(p)
	return abs
}

// fail reports what the page shows, keeps a screenshot, and stops the test.
func (b *tab) fail(format string, args ...any) {
	b.t.Helper()
	msg := fmt.Sprintf(format, args...)
	if state, err := eval[json.RawMessage](b, `({url: location.href,
		messages: [...document.querySelectorAll('.msg, #login-note')].map(e => e.id + ': ' + e.textContent).filter(s => !/: $/.test(s)),
		jobs: [...document.querySelectorAll('#jobs li')].map(e => e.dataset.status + ' ' + e.textContent)})`); err == nil {
		msg += "\npage: " + string(state)
	} else if !errors.Is(err, context.Canceled) {
		msg += "\n(page state unavailable: " + err.Error() + ")"
	}
	if p := b.screenshot("web-failure-" + strings.ReplaceAll(b.t.Name(), "/", "_") + ".png"); p != "" {
		msg += "\nscreenshot: " + p
	}
	b.t.Fatal(msg)
}
