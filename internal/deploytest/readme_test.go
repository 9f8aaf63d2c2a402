package deploytest

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// readmeVars returns, per service, the variables named in the first
// column of the tables of README.md's section "### <service>".
func readmeVars(t *testing.T) map[string]map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
	out := map[string]map[string]bool{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			section = ""
		case strings.HasPrefix(line, "### "):
			section = strings.TrimSpace(strings.TrimPrefix(line, "### "))
		case section != "" && strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| variable"):
			cells := strings.Split(line, "|")
			if len(cells) < 3 {
				continue
			}
			if out[section] == nil {
				out[section] = map[string]bool{}
			}
			for _, m := range name.FindAllStringSubmatch(cells[1], -1) {
				out[section][m[1]] = true
			}
		}
	}
	return out
}

// The README's configuration tables name exactly the variables each
// binary reads (its Config structs' env tags): none missing, none that
// the binary does not read.
func TestReadmeDocumentsEveryVariable(t *testing.T) {
	documented := readmeVars(t)
	// Read by every binary, documented once above the tables; GMAIL_*
	// are documented as the fallback of SMTP_USERNAME/SMTP_PASSWORD.
	everywhere := map[string]bool{"LOG_LEVEL": true}
	for _, svc := range services {
		spec := envSpec(svc.config)
		doc := documented[svc.name]
		if doc == nil {
			t.Errorf("README.md has no table under ### %s", svc.name)
			continue
		}
		var missing, unknown []string
		for v := range spec {
			if !doc[v] && !everywhere[v] {
				missing = append(missing, v)
			}
		}
		for v := range doc {
			if _, ok := spec[v]; !ok {
				unknown = append(unknown, v)
			}
		}
		sort.Strings(missing)
		sort.Strings(unknown)
		if len(missing) > 0 {
			t.Errorf("%s reads %v, which README.md's ### %s table does not name", svc.name, missing, svc.name)
		}
		if len(unknown) > 0 {
			t.Errorf("README.md's ### %s table names %v, which %s does not read", svc.name, unknown, svc.name)
		}
	}
}
