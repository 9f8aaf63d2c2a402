package deploytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// obj is one Kubernetes object as generic JSON (numbers are float64).
type obj = map[string]any

// kustomization is the part of kustomize's Kustomization (and Component)
// that the manifests use; render fails on any other field, so that a
// manifest never silently relies on something this renderer ignores.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Components []string `json:"components"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
		Digest  string `json:"digest"`
	} `json:"images"`
}

// render builds the kustomization in dir like `kustomize build` does for the
// features above: resources (files and directories, recursively), then the
// components (those listed, then extra), each adding its resources and
// applying its strategic-merge patches (map merge, `$patch: delete` of a
// whole object), then the kustomization's own patches and images.
func render(dir string, extra ...string) ([]obj, error) {
	k, err := readKustomization(dir)
	if err != nil {
		return nil, err
	}
	var objs []obj
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource %s: %w", dir, r, err)
		}
		var more []obj
		if st.IsDir() {
			more, err = render(p)
		} else {
			more, err = readObjects(p)
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	comps := append([]string(nil), k.Components...)
	for _, c := range comps {
		if objs, err = applyComponent(objs, filepath.Join(dir, c)); err != nil {
			return nil, err
		}
	}
	for _, c := range extra {
		if objs, err = applyComponent(objs, c); err != nil {
			return nil, err
		}
	}
	for _, p := range k.Patches {
		if objs, err = applyPatchFile(objs, filepath.Join(dir, p.Path)); err != nil {
			return nil, err
		}
	}
	for _, img := range k.Images {
		for _, o := range objs {
			for _, c := range containers(o) {
				name, _ := c["image"].(string)
				repo, _ := splitImage(name)
				if repo != img.Name {
					continue
				}
				if img.NewName != "" {
					repo = img.NewName
				}
				switch {
				case img.Digest != "":
					c["image"] = repo + "@" + img.Digest
				case img.NewTag != "":
					c["image"] = repo + ":" + img.NewTag
				default:
					c["image"] = repo + strings.TrimPrefix(name, img.Name)
				}
			}
		}
	}
	return objs, nil
}

func readKustomization(dir string) (kustomization, error) {
	var k kustomization
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return k, err
	}
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		return k, fmt.Errorf("%s/kustomization.yaml (only resources, components, patches with path, images are supported): %w", dir, err)
	}
	return k, nil
}

func applyComponent(objs []obj, dir string) ([]obj, error) {
	k, err := readKustomization(dir)
	if err != nil {
		return nil, err
	}
	if k.Kind != "Component" {
		return nil, fmt.Errorf("%s: kind %q, want Component", dir, k.Kind)
	}
	if len(k.Components) > 0 || len(k.Images) > 0 {
		return nil, fmt.Errorf("%s: nested components and images in a component are not supported", dir)
	}
	for _, r := range k.Resources {
		more, err := readObjects(filepath.Join(dir, r))
		if err != nil {
			return nil, err
		}
		objs = append(objs, more...)
	}
	for _, p := range k.Patches {
		if objs, err = applyPatchFile(objs, filepath.Join(dir, p.Path)); err != nil {
			return nil, err
		}
	}
	return objs, nil
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// readObjects parses a (multi-document) YAML file.
func readObjects(path string) ([]obj, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []obj
	for i, doc := range docSep.Split(string(b), -1) {
		var o obj
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i+1, err)
		}
		if len(o) == 0 {
			continue
		}
		if str(o, "kind") == "" || str(o, "metadata", "name") == "" {
			return nil, fmt.Errorf("%s: document %d has no kind or metadata.name", path, i+1)
		}
		out = append(out, o)
	}
	return out, nil
}

func applyPatchFile(objs []obj, path string) ([]obj, error) {
	patches, err := readObjects(path)
	if err != nil {
		return nil, err
	}
	for _, p := range patches {
		i := find(objs, str(p, "kind"), str(p, "metadata", "name"))
		if i < 0 {
			return nil, fmt.Errorf("%s: patch target %s/%s not found", path, str(p, "kind"), str(p, "metadata", "name"))
		}
		if p["$patch"] == "delete" {
			objs = append(objs[:i:i], objs[i+1:]...)
			continue
		}
		objs[i] = mergeMaps(objs[i], p)
	}
	return objs, nil
}

// mergeMaps is a strategic merge patch restricted to maps: nested maps
// merge, a null deletes, anything else (lists included) replaces.
func mergeMaps(dst, patch obj) obj {
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			if dv, ok := dst[k].(map[string]any); ok {
				dst[k] = mergeMaps(dv, pv)
			} else {
				dst[k] = pv
			}
		default:
			dst[k] = v
		}
	}
	return dst
}

func find(objs []obj, kind, name string) int {
	for i, o := range objs {
		if str(o, "kind") == kind && str(o, "metadata", "name") == name {
			return i
		}
	}
	return -1
}

// get walks nested maps; nil when a step is missing.
func get(o any, path ...string) any {
	for _, p := range path {
		m, ok := o.(map[string]any)
		if !ok {
			return nil
		}
		o = m[p]
	}
	return o
}

func str(o any, path ...string) string   { s, _ := get(o, path...).(string); return s }
func mapAt(o any, path ...string) obj    { m, _ := get(o, path...).(map[string]any); return m }
func listAt(o any, path ...string) []any { l, _ := get(o, path...).([]any); return l }

// podSpec is the pod template's spec of a workload, nil for other kinds.
func podSpec(o obj) obj {
	switch str(o, "kind") {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
		return mapAt(o, "spec", "template", "spec")
	case "CronJob":
		return mapAt(o, "spec", "jobTemplate", "spec", "template", "spec")
	}
	return nil
}

func podLabels(o obj) obj {
	if str(o, "kind") == "CronJob" {
		return mapAt(o, "spec", "jobTemplate", "spec", "template", "metadata", "labels")
	}
	return mapAt(o, "spec", "template", "metadata", "labels")
}

// containers returns the containers and init containers of a workload.
func containers(o obj) []obj {
	ps := podSpec(o)
	var out []obj
	for _, key := range []string{"initContainers", "containers"} {
		for _, c := range listAt(ps, key) {
			if m, ok := c.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

// splitImage splits "repo[:tag][@digest]" into the repository and the rest
// (":tag", "@digest", ":tag@digest" or "").
func splitImage(image string) (repo, rest string) {
	at := strings.IndexByte(image, '@')
	if at >= 0 {
		image, rest = image[:at], image[at:]
	}
	slash := strings.LastIndexByte(image, '/')
	if colon := strings.LastIndexByte(image, ':'); colon > slash {
		return image[:colon], image[colon:] + rest
	}
	return image, rest
}

func deepCopy(objs []obj) []obj {
	b, err := json.Marshal(objs)
	if err != nil {
		panic(err)
	}
	var out []obj
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

func parseDuration(s string) (time.Duration, error) { return time.ParseDuration(s) }

// The component sets the tests render: the base alone, each component on
// it, and all of them together except host-databases, whose databases
// outside the cluster the network policies do not cover (see README.md).
var componentSets = [][]string{
	nil,
	{"ingress"},
	{"host-databases"},
	{"hpa"},
	{"keda"},
	{"network-policies"},
	{"ingress", "hpa", "keda", "network-policies"},
}

func manifestsDir(t testing.TB) string { return filepath.Join(repoRoot(t), "manifests") }

func renderSet(t testing.TB, comps []string) []obj {
	t.Helper()
	dir := manifestsDir(t)
	var extra []string
	for _, c := range comps {
		extra = append(extra, filepath.Join(dir, "components", c))
	}
	objs, err := render(dir, extra...)
	if err != nil {
		t.Fatalf("render %v: %v", comps, err)
	}
	return objs
}

func setName(comps []string) string {
	if len(comps) == 0 {
		return "base"
	}
	return strings.Join(comps, "+")
}

// TestRenderMatchesKustomize proves the renderer above equal to kustomize
// itself (kubectl's built-in one) on every component set, through a
// temporary overlay. Skipped where kubectl is not installed.
func TestRenderMatchesKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed: the Go renderer is not cross-checked against kustomize")
	}
	dir := manifestsDir(t)
	for _, comps := range componentSets {
		t.Run(setName(comps), func(t *testing.T) {
			overlay := t.TempDir()
			rel, err := filepath.Rel(overlay, dir)
			if err != nil {
				t.Fatal(err)
			}
			k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel + "\n"
			if len(comps) > 0 {
				k += "components:\n"
				for _, c := range comps {
					k += "  - " + filepath.Join(rel, "components", c) + "\n"
				}
			}
			if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(kubectl, "kustomize", overlay)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("kubectl kustomize: %v\n%s", err, stderr.String())
			}
			var want []obj
			for i, doc := range docSep.Split(stdout.String(), -1) {
				var o obj
				if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
					t.Fatalf("kubectl kustomize output, document %d: %v", i+1, err)
				}
				if len(o) > 0 {
					want = append(want, o)
				}
			}
			got := renderSet(t, comps)
			sortObjs(want)
			sortObjs(got)
			if len(got) != len(want) {
				t.Fatalf("render gives %d objects %v, kustomize %d %v", len(got), ids(got), len(want), ids(want))
			}
			for i := range got {
				if !reflect.DeepEqual(normalize(got[i]), normalize(want[i])) {
					g, _ := json.MarshalIndent(got[i], "", "  ")
					w, _ := json.MarshalIndent(want[i], "", "  ")
					t.Errorf("%s differs:\nrender: %s\nkustomize: %s", ids(got[i:i+1]), g, w)
				}
			}
		})
	}
}

func id(o obj) string { return str(o, "kind") + "/" + str(o, "metadata", "name") }

func ids(objs []obj) []string {
	var out []string
	for _, o := range objs {
		out = append(out, id(o))
	}
	return out
}

func sortObjs(objs []obj) { sort.Slice(objs, func(i, j int) bool { return id(objs[i]) < id(objs[j]) }) }

// normalize round-trips through JSON so that both sides have the same types.
func normalize(o obj) any {
	b, _ := json.Marshal(o)
	var v any
	_ = json.Unmarshal(b, &v)
	return v
}
