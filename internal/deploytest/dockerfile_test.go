package deploytest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// stage is one FROM ... section of a Dockerfile.
type stage struct {
	image, name string
	nodes       []*parser.Node
}

func parseDockerfile(src []byte) ([]stage, error) {
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, err
	}
	var stages []stage
	for _, n := range res.AST.Children {
		if strings.EqualFold(n.Value, "from") {
			args := nodeArgs(n)
			st := stage{}
			if len(args) > 0 {
				st.image = args[0]
			}
			if len(args) == 3 && strings.EqualFold(args[1], "as") {
				st.name = args[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			continue // ARG before FROM
		}
		stages[len(stages)-1].nodes = append(stages[len(stages)-1].nodes, n)
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return stages, nil
}

func nodeArgs(n *parser.Node) []string {
	var out []string
	for a := n.Next; a != nil; a = a.Next {
		out = append(out, a.Value)
	}
	return out
}

func (s stage) instructions(name string) []*parser.Node {
	var out []*parser.Node
	for _, n := range s.nodes {
		if strings.EqualFold(n.Value, name) {
			out = append(out, n)
		}
	}
	return out
}

var (
	goBuild  = regexp.MustCompile(`\bgo\s+build\b`)
	outFlag  = regexp.MustCompile(`\s-o[ =](\S+)`)
	fromFlag = regexp.MustCompile(`^--from=(\S+)$`)
)

// checkDockerfile checks Dockerfile.<svc>: pinned bases, a build of
// ./cmd/<svc> (static and -trimpath when static is set), the entrypoint is
// the binary built, a non-root USER, EXPOSE port, and ffmpeg when wanted.
func checkDockerfile(svc string, src []byte, root string, port int, static, ffmpeg bool) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	stages, err := parseDockerfile(src)
	if err != nil {
		return []error{err}
	}
	names := map[string]int{}
	for i, st := range stages {
		if st.name != "" {
			names[st.name] = i
		}
		if _, prev := names[st.image]; prev && st.name != st.image || st.image == "scratch" {
			continue // FROM an earlier stage
		}
		_, rest := splitImage(st.image)
		tag, _, _ := strings.Cut(rest, "@")
		if strings.Contains(st.image, "$") || (!strings.Contains(rest, "@sha256:") && (!imageTag.MatchString(tag) || tag == ":latest")) {
			bad("FROM %s: base image not pinned by tag (or digest)", st.image)
		}
	}

	// The build: `go build ... -o OUT ./cmd/<svc>` in a stage.
	var built, builtIn string
	for _, st := range stages[:len(stages)-1] {
		for _, run := range st.instructions("run") {
			cmd := strings.Join(nodeArgs(run), " ")
			if !goBuild.MatchString(cmd) {
				continue
			}
			if !regexp.MustCompile(`\./cmd/` + regexp.QuoteMeta(svc) + `(\s|$|/?\s*$)`).MatchString(cmd + " ") {
				bad("go build does not build ./cmd/%s: %s", svc, cmd)
				continue
			}
			if m := outFlag.FindStringSubmatch(cmd); m != nil {
				built, builtIn = m[1], st.name
			} else {
				bad("go build has no -o: %s", cmd)
			}
			if static {
				env := cmd
				for _, e := range st.instructions("env") {
					env += " " + strings.Join(nodeArgs(e), "=")
				}
				if !strings.Contains(env, "CGO_ENABLED=0") {
					bad("go build of %s is not static (CGO_ENABLED=0): %s", svc, cmd)
				}
				if !strings.Contains(cmd, "-trimpath") {
					bad("go build of %s without -trimpath: %s", svc, cmd)
				}
			}
		}
	}
	if st, err := os.Stat(filepath.Join(root, "cmd", svc, "main.go")); err != nil || st.IsDir() {
		bad("./cmd/%s/main.go does not exist", svc)
	}
	if built == "" {
		bad("no stage builds ./cmd/%s with go build -o", svc)
	}

	final := stages[len(stages)-1]
	// The binary copied into the final stage.
	var installed string
	for _, cp := range final.instructions("copy") {
		args := nodeArgs(cp)
		from := ""
		for _, f := range cp.Flags {
			if m := fromFlag.FindStringSubmatch(f); m != nil {
				from = m[1]
			}
		}
		if from == "" || from != builtIn || len(args) < 2 {
			continue
		}
		for _, src := range args[:len(args)-1] {
			if filepath.Clean(src) == filepath.Clean(built) {
				installed = args[len(args)-1]
				if strings.HasSuffix(installed, "/") {
					installed += filepath.Base(built)
				}
			}
		}
	}
	if built != "" && installed == "" {
		bad("the final stage does not COPY --from=%s %s", builtIn, built)
	}
	eps := final.instructions("entrypoint")
	switch {
	case len(eps) != 1:
		bad("want one ENTRYPOINT in the final stage, have %d", len(eps))
	case !eps[0].Attributes["json"]:
		bad("ENTRYPOINT is not in exec (JSON) form, so SIGTERM would not reach the binary")
	default:
		if args := nodeArgs(eps[0]); len(args) == 0 || args[0] != installed {
			bad("ENTRYPOINT %v does not run the binary built (%s)", args, installed)
		}
	}

	users := final.instructions("user")
	if len(users) == 0 {
		bad("no USER in the final stage: it would run as root")
	} else {
		u := nodeArgs(users[len(users)-1])
		user, _, _ := strings.Cut(strings.Join(u, ""), ":")
		if n, err := strconv.Atoi(user); (err == nil && n == 0) || (err != nil && user != "nonroot") {
			bad("USER %q: want a numeric non-zero UID or nonroot", user)
		}
	}

	var exposed []string
	for _, e := range final.instructions("expose") {
		for _, p := range nodeArgs(e) {
			p, _, _ = strings.Cut(p, "/")
			exposed = append(exposed, p)
		}
	}
	if len(exposed) != 1 || exposed[0] != strconv.Itoa(port) {
		bad("EXPOSE %v, want %d (the manifest's containerPort)", exposed, port)
	}

	if ffmpeg {
		found := false
		for _, run := range final.instructions("run") {
			cmd := strings.Join(nodeArgs(run), " ")
			if regexp.MustCompile(`(apt-get|apt|apk)\s+(install|add)\b[^&;|]*\bffmpeg\b`).MatchString(cmd) {
				found = true
			}
		}
		if !found {
			bad("ffmpeg is not installed in the final stage")
		}
	}
	return errs
}

// manifestPort is the first containerPort of the service's Deployment.
func manifestPort(t *testing.T, objs []obj, svc string) int {
	t.Helper()
	i := find(objs, "Deployment", svc)
	if i < 0 {
		t.Fatalf("no Deployment/%s", svc)
	}
	ctrs := listAt(objs[i], "spec", "template", "spec", "containers")
	if len(ctrs) == 0 {
		t.Fatalf("Deployment/%s has no container", svc)
	}
	p, ok := get(listAt(ctrs[0], "ports")[0], "containerPort").(float64)
	if !ok {
		t.Fatalf("Deployment/%s has no containerPort", svc)
	}
	return int(p)
}

func TestDockerfiles(t *testing.T) {
	root := repoRoot(t)
	objs := renderSet(t, nil)
	for _, svc := range services {
		t.Run(svc.name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(root, "Dockerfile."+svc.name))
			if os.IsNotExist(err) && svc.name == "converter" {
				t.Skip("Dockerfile.converter does not exist yet (being written)")
			}
			if err != nil {
				t.Fatal(err)
			}
			port := manifestPort(t, objs, svc.name)
			for _, err := range checkDockerfile(svc.name, src, root, port, svc.name != "converter", svc.name == "converter") {
				t.Error(err)
			}
		})
	}
}

// TestDockerfileChecksCatchBreakage proves that checkDockerfile fails on
// broken Dockerfiles.
func TestDockerfileChecksCatchBreakage(t *testing.T) {
	root := repoRoot(t)
	good, err := os.ReadFile(filepath.Join(root, "Dockerfile.auth"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := checkDockerfile("auth", good, root, 5000, true, false); len(errs) > 0 {
		t.Fatalf("Dockerfile.auth: %v", errs)
	}
	cases := []struct{ name, old, new, want string }{
		{"latest base", "golang:1.26-bookworm", "golang:latest", "not pinned"},
		{"untagged base", "gcr.io/distroless/static-debian12:nonroot", "gcr.io/distroless/static-debian12", "not pinned"},
		{"root user", "USER 65532:65532", "USER root", "USER"},
		{"no user", "USER 65532:65532\n", "", "no USER"},
		{"cgo", "CGO_ENABLED=0 ", "", "CGO_ENABLED=0"},
		{"no trimpath", "-trimpath ", "", "-trimpath"},
		{"wrong package", "./cmd/auth", "./cmd/gateway", "does not build ./cmd/auth"},
		{"wrong entrypoint", `ENTRYPOINT ["/usr/local/bin/auth"]`, `ENTRYPOINT ["/usr/local/bin/other"]`, "ENTRYPOINT"},
		{"shell entrypoint", `ENTRYPOINT ["/usr/local/bin/auth"]`, `ENTRYPOINT /usr/local/bin/auth`, "exec (JSON) form"},
		{"wrong expose", "EXPOSE 5000", "EXPOSE 8080", "EXPOSE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(string(good), tc.old, tc.new, 1)
			if src == string(good) {
				t.Fatalf("%q not in Dockerfile.auth", tc.old)
			}
			for _, err := range checkDockerfile("auth", []byte(src), root, 5000, true, false) {
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Errorf("no error mentions %q", tc.want)
		})
	}
	if errs := checkDockerfile("auth", good, root, 5000, true, true); len(errs) == 0 {
		t.Error("a Dockerfile without ffmpeg passes the ffmpeg check")
	}
}
