package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"mp3converter/internal/httpx"
)

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// documentedOps reads an OpenAPI document: per operation ("GET /jobs/{id}"),
// the statuses it documents. Only explicit three-digit statuses count:
// "default" or "4XX" would let any status through, so they are an error.
func documentedOps(doc []byte) (map[string]map[int]bool, error) {
	var d struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, err
	}
	out := map[string]map[int]bool{}
	for path, item := range d.Paths {
		for key, raw := range item {
			if !slices.Contains(openAPIMethods, key) {
				continue
			}
			var op struct {
				Responses map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				return nil, fmt.Errorf("%s %s: %w", key, path, err)
			}
			if len(op.Responses) == 0 {
				return nil, fmt.Errorf("%s %s documents no responses", key, path)
			}
			name := strings.ToUpper(key) + " " + path
			out[name] = map[int]bool{}
			for code := range op.Responses {
				n, err := strconv.Atoi(code)
				if err != nil || n < 100 || n > 599 {
					return nil, fmt.Errorf("%s: response %q is not one status: name each status the route answers", name, code)
				}
				out[name][n] = true
			}
		}
	}
	return out, nil
}

// DocumentedOps is documentedOps of the embedded document, for the
// external tests (which check the statuses they saw against it).
func DocumentedOps() (map[string]map[int]bool, error) { return documentedOps(openAPI) }

// bareServer is a gateway without stores or auth: enough to route, and to
// answer what needs neither.
func bareServer() *Server {
	return NewServer(Deps{Ops: httpx.NewOps(httpx.NewRegistry()), Log: slog.New(slog.DiscardHandler)}, Options{})
}

// The document describes the router exactly: every route chi has, with
// its method, is in it, and every operation in it is routed.
func TestOpenAPIMatchesRouter(t *testing.T) {
	ops, err := documentedOps(openAPI)
	if err != nil {
		t.Fatal(err)
	}
	routed := map[string]bool{}
	err = chi.Walk(bareServer().router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		routed[method+" "+route] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(routed) == 0 {
		t.Fatal("chi.Walk found no routes")
	}
	var undocumented, unrouted []string
	for r := range routed {
		if ops[r] == nil {
			undocumented = append(undocumented, r)
		}
	}
	for op := range ops {
		if !routed[op] {
			unrouted = append(unrouted, op)
		}
	}
	slices.Sort(undocumented)
	slices.Sort(unrouted)
	if len(undocumented) > 0 {
		t.Errorf("routed but not in openapi.json: %s", strings.Join(undocumented, ", "))
	}
	if len(unrouted) > 0 {
		t.Errorf("in openapi.json but not routed: %s", strings.Join(unrouted, ", "))
	}
}

// The document is OpenAPI 3.1 and whole: every $ref points at something
// in it, every operation has an operationId (each its own), and every path
// parameter of a path is declared.
func TestOpenAPIDocument(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", v)
	}
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok {
				refs = append(refs, ref)
			}
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(doc)
	for _, ref := range refs {
		ptr, ok := strings.CutPrefix(ref, "#/")
		if !ok {
			t.Errorf("$ref %q is not within the document", ref)
			continue
		}
		var at any = doc
		for _, name := range strings.Split(ptr, "/") {
			m, _ := at.(map[string]any)
			at = m[strings.NewReplacer("~1", "/", "~0", "~").Replace(name)]
		}
		if at == nil {
			t.Errorf("$ref %q points at nothing", ref)
		}
	}
	ids := map[string]string{}
	param := regexp.MustCompile(`\{([^}]+)\}`)
	paths, _ := doc["paths"].(map[string]any)
	for path, item := range paths {
		item, _ := item.(map[string]any)
		declared := map[string]bool{}
		collect := func(v any) {
			list, _ := v.([]any)
			for _, p := range list {
				p, _ := p.(map[string]any)
				if p["in"] == "path" {
					declared[p["name"].(string)] = true
				}
			}
		}
		collect(item["parameters"])
		for _, m := range openAPIMethods {
			op, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			name := strings.ToUpper(m) + " " + path
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s has no operationId", name)
			} else if other, dup := ids[id]; dup {
				t.Errorf("%s and %s share operationId %q", name, other, id)
			}
			ids[id] = name
			opDeclared := maps.Clone(declared)
			list, _ := op["parameters"].([]any)
			for _, p := range list {
				p, _ := p.(map[string]any)
				if p["in"] == "path" {
					opDeclared[p["name"].(string)] = true
				}
			}
			for _, m := range param.FindAllStringSubmatch(path, -1) {
				if !opDeclared[m[1]] {
					t.Errorf("%s: path parameter %q is not declared", name, m[1])
				}
			}
		}
	}
}

// GET /openapi.json answers the embedded document as JSON, with no login.
func TestOpenAPIServed(t *testing.T) {
	srv := httptest.NewServer(bareServer())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /openapi.json: %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if !bytes.Equal(body, openAPI) {
		t.Error("GET /openapi.json does not answer openapi.json")
	}
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("the answer is not JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") || doc.Paths["/openapi.json"] == nil {
		t.Errorf("openapi %q with paths %v: want 3.1.x describing /openapi.json", doc.OpenAPI, doc.Paths)
	}
}
