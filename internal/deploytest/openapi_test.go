package deploytest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// gatewayURL is a URL on the gateway as the READMEs write it: its port
// 8080 on some host, or $GATEWAY_URL. The first group is the path (the
// query left off).
var gatewayURL = regexp.MustCompile(`^(?:https?://[^/\s]+:8080|\$\{?GATEWAY_URL\}?)(/[^?#\s]*)`)

// curlCall is the request one curl command line makes.
type curlCall struct{ method, path string }

// curlRequest reads the curl command in a shell line (after "curl", up to
// the end, a comment, a pipe or the closing of a $(…)): the method it
// sends (-X, else HEAD for -I, POST for a form or data unless -G, else
// GET; -u changes nothing) and the gateway path it asks. ok is false when
// the line runs no curl or asks no gateway URL.
func curlRequest(line string) (call curlCall, ok bool) {
	words := shellWords(line)
	start := slices.Index(words, "curl")
	if start < 0 {
		return curlCall{}, false
	}
	var explicit, path string
	var head, data, get bool
	args := words[start+1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "|" || a == ")" || a == ";" || a == "&&" || strings.HasPrefix(a, "#") {
			break
		}
		next := func() string {
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		switch {
		case a == "-X" || a == "--request":
			explicit = next()
		case strings.HasPrefix(a, "--request="):
			explicit = strings.TrimPrefix(a, "--request=")
		case strings.HasPrefix(a, "-X") && !strings.HasPrefix(a, "--"):
			explicit = strings.TrimPrefix(a, "-X")
		case a == "-I" || a == "--head":
			head = true
		case a == "-G" || a == "--get":
			get = true
		case a == "-F" || a == "--form" || a == "-d" || a == "--data" || a == "--data-binary" ||
			a == "--data-raw" || a == "--data-urlencode" || a == "--json" || a == "--form-string":
			data = true
			next()
		case a == "-T" || a == "--upload-file":
			explicit = "PUT"
			next()
		case a == "-H" || a == "--header" || a == "-u" || a == "--user" || a == "-o" || a == "--output" ||
			a == "-e" || a == "--referer" || a == "-A" || a == "--user-agent" || a == "-b" || a == "--cookie" ||
			a == "-c" || a == "--cookie-jar" || a == "-r" || a == "--range" || a == "--url":
			if v := next(); a == "--url" {
				if m := gatewayURL.FindStringSubmatch(v); m != nil {
					path = m[1]
				}
			}
		default:
			if m := gatewayURL.FindStringSubmatch(strings.TrimRight(a, ")")); m != nil && path == "" {
				path = m[1]
			}
		}
	}
	if path == "" {
		return curlCall{}, false
	}
	method := "GET"
	switch {
	case explicit != "":
		method = strings.ToUpper(explicit)
	case head:
		method = "HEAD"
	case data && !get:
		method = "POST"
	}
	return curlCall{method: method, path: path}, true
}

// shellWords splits a shell line into words, with single and double
// quotes (no expansion: $TOKEN stays as written). "$(" and ")" outside
// quotes are words of their own; "#" starts a comment at a word's start.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteRune(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == ' ' || c == '\t':
			flush()
		case c == '$' && i+1 < len(rs) && rs[i+1] == '(':
			// TOKEN=$(curl …): the assignment and "$(" end here.
			flush()
			words = append(words, "$(")
			i++
		case c == ')' || c == '|' || c == ';':
			flush()
			words = append(words, string(c))
		case c == '#' && !inWord:
			flush()
			words = append(words, line[len(string(rs[:i])):])
			return words
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	flush()
	return words
}

func TestCurlRequest(t *testing.T) {
	for _, tc := range []struct {
		line string
		want curlCall
		ok   bool
	}{
		{`curl http://127.0.0.1:8080/jobs`, curlCall{"GET", "/jobs"}, true},
		{`TOKEN=$(curl -s -X POST -u 'a@b.c:pw' http://127.0.0.1:8080/login)`, curlCall{"POST", "/login"}, true},
		{`curl -u 'a@b.c:pw' http://127.0.0.1:8080/login`, curlCall{"GET", "/login"}, true},
		{`curl -i -H "Authorization: Bearer $TOKEN" -F "file=@video.mp4" "$GATEWAY_URL/upload"`, curlCall{"POST", "/upload"}, true},
		{`curl -d x=1 http://h:8080/upload`, curlCall{"POST", "/upload"}, true},
		{`curl -G -d fid=1 http://h:8080/download`, curlCall{"GET", "/download"}, true},
		{`curl -I http://h:8080/`, curlCall{"HEAD", "/"}, true},
		{`curl -XDELETE ${GATEWAY_URL}/jobs/65a1b2c3d4e5f60718293a4b`, curlCall{"DELETE", "/jobs/65a1b2c3d4e5f60718293a4b"}, true},
		{`curl --request=put http://h:8080/upload`, curlCall{"PUT", "/upload"}, true},
		{`curl -H "Authorization: Bearer $TOKEN" -o song.mp3 "http://127.0.0.1:8080/download?fid=<mp3_fid>"`, curlCall{"GET", "/download"}, true},
		{`curl -s "$MAILPIT_API/messages" | head -c 400; echo`, curlCall{}, false},
		{`curl http://127.0.0.1:5000/login   # auth, not the gateway`, curlCall{}, false},
		{`browser / curl ──HTTP──> gateway`, curlCall{}, false},
		{`echo curl http://h:8080/jobs # curl http://h:8080/other`, curlCall{"GET", "/jobs"}, true},
	} {
		got, ok := curlRequest(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("curlRequest(%s) = %v %v, want %v %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

// gatewayOperations reads the gateway's OpenAPI document: per path
// template (as a pattern for a concrete path), the methods it documents.
func gatewayOperations(t *testing.T) map[*regexp.Regexp][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "internal", "gateway", "openapi.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("internal/gateway/openapi.json: %v", err)
	}
	param := regexp.MustCompile(`\\\{[^}]*\}`)
	out := map[*regexp.Regexp][]string{}
	for path, item := range doc.Paths {
		re := regexp.MustCompile("^" + param.ReplaceAllString(regexp.QuoteMeta(path), `[^/]+`) + "$")
		for m := range item {
			switch m {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				out[re] = append(out[re], strings.ToUpper(m))
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("internal/gateway/openapi.json documents no operation")
	}
	return out
}

// Every curl example in the READMEs that asks the gateway (:8080 or
// $GATEWAY_URL) asks for an operation the gateway's OpenAPI document
// describes, with that method.
func TestReadmeCurlExamplesAreInTheAPI(t *testing.T) {
	ops := gatewayOperations(t)
	documented := func(c curlCall) bool {
		for re, methods := range ops {
			if re.MatchString(c.path) && slices.Contains(methods, c.method) {
				return true
			}
		}
		return false
	}
	found := 0
	for _, name := range []string{"README.md", filepath.Join("manifests", "README.md")} {
		b, err := os.ReadFile(filepath.Join(repoRoot(t), name))
		if err != nil {
			t.Fatal(err)
		}
		fenced := false
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				fenced = !fenced
				continue
			}
			if !fenced {
				continue
			}
			c, ok := curlRequest(line)
			if !ok {
				continue
			}
			found++
			if !documented(c) {
				t.Errorf("%s:%d: %s %s is not in internal/gateway/openapi.json: %s", name, i+1, c.method, c.path, strings.TrimSpace(line))
			}
		}
	}
	if found == 0 {
		t.Fatal("no curl example asks the gateway: is the URL rule out of date?")
	}
	t.Logf("%d curl examples checked", found)
}
