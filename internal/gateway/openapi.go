package gateway

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 description of the gateway's public port,
// written by hand. The tests hold it to the router (every route and
// method, no other) and to every status the gateway's tests see it
// answer.
//
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI answers GET /openapi.json: the document, to anyone.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPI)
}
