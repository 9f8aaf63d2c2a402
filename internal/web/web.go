// Package web is the browser app the gateway serves at /: a login form, an
// upload form (a drop zone and a file input taking several files, each
// uploaded as its own job with its own progress), the list of the user's
// conversions (following GET /events live, polled while that is down)
// with, per MP3, a player, a download saved under the
// video's name and a delete button, and the landing of the link in the
// notification email (/?download=<fid>). It is embedded in the binary
// and needs nothing from elsewhere (no CDN, no framework), so it works
// offline.
//
// The app keeps the JWT in sessionStorage and sends it only in the
// Authorization header (downloads and the player go through fetch and a
// Blob, never a URL with the token). The pages are served with a Content-Security-Policy that
// allows scripts, styles and connections to this origin only: the
// JavaScript is app.js and tus-js-client (tus.min.js, from the npm registry,
// unchanged), which sends the uploads resumably (tus, /uploads).
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
)

//go:embed static
var files embed.FS

// ContentSecurityPolicy is sent with every response of the app. No inline
// script or style, no eval, no plugin, no framing, connections to this
// origin only; favicons may be data: URLs, and the in-page player plays
// blob: URLs (the MP3 fetched with the token in the header).
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
	"form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string // strong, quoted
	version     string // short content hash, the ?v= of versioned URLs
}

// app holds the assets, loaded once.
type app struct {
	index  asset
	static map[string]asset // by base name: app.js, style.css
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

func newAsset(name string, body []byte) asset {
	sum := sha256.Sum256(body)
	h := hex.EncodeToString(sum[:])
	return asset{body: body, contentType: contentTypes[path.Ext(name)], etag: `"` + h[:32] + `"`, version: h[:12]}
}

// load reads the embedded files and points index.html at versioned asset
// URLs (/static/app.js?v=<hash>), so that browsers may cache the assets for
// a year and still get a new app.js the moment the binary changes.
func load() (*app, error) {
	a := &app{static: map[string]asset{}}
	entries, err := fs.ReadDir(files, "static")
	if err != nil {
		return nil, err
	}
	var index []byte
	for _, e := range entries {
		b, err := fs.ReadFile(files, "static/"+e.Name())
		if err != nil {
			return nil, err
		}
		if e.Name() == "index.html" {
			index = b
			continue
		}
		if contentTypes[path.Ext(e.Name())] == "" {
			return nil, fmt.Errorf("web: no content type for %s", e.Name())
		}
		a.static[e.Name()] = newAsset(e.Name(), b)
	}
	if index == nil {
		return nil, fmt.Errorf("web: index.html missing")
	}
	for name, s := range a.static {
		ref := []byte(`"/static/` + name + `"`)
		index = bytes.ReplaceAll(index, ref, []byte(`"/static/`+name+`?v=`+s.version+`"`))
	}
	a.index = newAsset("index.html", index)
	return a, nil
}

// loadOnce loads the assets on first use. They are part of the binary, so
// an error is a build defect (the package's tests catch it).
var loadOnce = sync.OnceValues(load)

// Mount adds the app's routes to the gateway's router: GET and HEAD of /
// (the page) and /static/{name} (its script and style sheet).
func Mount(r chi.Router) {
	h := Handler()
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		r.Method(m, "/", h)
		r.Method(m, "/static/{name}", h)
	}
}

// Handler serves the app by itself: / and /static/{name}; anything else is
// 404.
func Handler() http.Handler {
	a, err := loadOnce()
	if err != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "web app unavailable", http.StatusInternalServerError)
		})
	}
	return a
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setSecurityHeaders(w.Header())
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	switch {
	case r.URL.Path == "/":
		// The page names the current versions of the assets: revalidate
		// it every time (a 304 when unchanged).
		a.serve(w, r, a.index, "no-cache")
	case strings.HasPrefix(r.URL.Path, "/static/"):
		s, ok := a.static[strings.TrimPrefix(r.URL.Path, "/static/")]
		if !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		cache := "no-cache"
		if r.URL.Query().Get("v") == s.version {
			cache = "public, max-age=31536000, immutable"
		}
		a.serve(w, r, s, cache)
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func (a *app) serve(w http.ResponseWriter, r *http.Request, s asset, cache string) {
	h := w.Header()
	h.Set("Content-Type", s.contentType)
	h.Set("Cache-Control", cache)
	h.Set("ETag", s.etag)
	// ServeContent answers If-None-Match with 304, HEAD without a body,
	// and Range requests.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(s.body))
}

func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
}
