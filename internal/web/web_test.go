package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

func newRouter() http.Handler {
	r := chi.NewRouter()
	Mount(r)
	r.Get("/jobs", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "api") })
	return r
}

func get(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSecurityHeadersAndTypes(t *testing.T) {
	a, err := load()
	if err != nil {
		t.Fatal(err)
	}
	h := newRouter()
	for _, tc := range []struct {
		target, ctype, cache string
	}{
		{"/", "text/html; charset=utf-8", "no-cache"},
		{"/?download=0123456789abcdef01234567", "text/html; charset=utf-8", "no-cache"},
		{"/static/app.js", "text/javascript; charset=utf-8", "no-cache"},
		{"/static/style.css", "text/css; charset=utf-8", "no-cache"},
		{"/static/app.js?v=" + a.static["app.js"].version, "text/javascript; charset=utf-8", "public, max-age=31536000, immutable"},
		{"/static/style.css?v=" + a.static["style.css"].version, "text/css; charset=utf-8", "public, max-age=31536000, immutable"},
		{"/static/app.js?v=stale", "text/javascript; charset=utf-8", "no-cache"},
	} {
		t.Run(tc.target, func(t *testing.T) {
			resp := get(t, h, http.MethodGet, tc.target, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			want := map[string]string{
				"Content-Type":            tc.ctype,
				"Cache-Control":           tc.cache,
				"Content-Security-Policy": ContentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
				"Referrer-Policy":         "no-referrer",
				"X-Frame-Options":         "DENY",
			}
			for k, v := range want {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
				t.Error("CSP lacks default-src 'self'")
			}
			if resp.Header.Get("ETag") == "" {
				t.Error("no ETag")
			}
			if b := body(t, resp); len(b) == 0 {
				t.Error("empty body")
			}
		})
	}
}

func TestConditionalHeadAndMissing(t *testing.T) {
	h := newRouter()
	first := get(t, h, http.MethodGet, "/", nil)
	etag := first.Header.Get("ETag")
	if resp := get(t, h, http.MethodGet, "/", map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: status %d, want 304", resp.StatusCode)
	}
	resp := get(t, h, http.MethodHead, "/static/app.js", nil)
	if resp.StatusCode != http.StatusOK || body(t, resp) != "" || resp.Header.Get("Content-Length") == "" {
		t.Errorf("HEAD: status %d, content-length %q", resp.StatusCode, resp.Header.Get("Content-Length"))
	}
	for _, target := range []string{"/static/nope.js", "/static/index.html", "/static/../web.go"} {
		resp := get(t, h, http.MethodGet, target, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", target, resp.StatusCode)
		}
	}
	// The app's routes leave the API alone.
	if resp := get(t, h, http.MethodGet, "/jobs", nil); body(t, resp) != "api" {
		t.Error("GET /jobs did not reach the API route")
	}
}

// The CSP forbids inline script and style: the page must have none, and it
// must name the assets by their current versions.
func TestIndexHasNoInlineCode(t *testing.T) {
	a, err := load()
	if err != nil {
		t.Fatal(err)
	}
	page := string(a.index.body)
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<script(?:\s[^>]*)?>\s*[^<\s]`), // a script with content
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),                // event handler attributes
		regexp.MustCompile(`(?i)\sstyle\s*=`),                   // style attributes
		regexp.MustCompile(`(?i)<style`),                        // style elements
		regexp.MustCompile(`(?i)https?://`),                     // anything from elsewhere
	} {
		if m := re.FindString(page); m != "" {
			t.Errorf("index.html has %q (%s)", m, re)
		}
	}
	for _, tag := range regexp.MustCompile(`(?i)<script[^>]*>`).FindAllString(page, -1) {
		if !strings.Contains(tag, `src="/static/app.js?v=`+a.static["app.js"].version+`"`) &&
			!strings.Contains(tag, `src="/static/tus.min.js?v=`+a.static["tus.min.js"].version+`"`) {
			t.Errorf("script tag %s does not load the versioned app.js or tus.min.js", tag)
		}
	}
	if !strings.Contains(page, `href="/static/style.css?v=`+a.static["style.css"].version+`"`) {
		t.Error("index.html does not link the versioned style.css")
	}
}
