package deploytest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// service is what the tests know of one binary of the suite.
type service struct {
	name      string
	replicas  int
	configDir string // the packages (comma-separated) whose `env` struct tags are the binary's configuration
}

var services = []service{
	{"auth", 2, "internal/auth"},
	{"gateway", 2, "internal/gateway,internal/mongodb,internal/mq"},
	{"converter", 4, "internal/converter,internal/retention,internal/mongodb,internal/mq"},
	{"notification", 4, "internal/notification,internal/mongodb,internal/mq"},
}

// repoRoot is the module root: two levels above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// envVar is one field of a Config struct read from the environment.
type envVar struct {
	name     string
	def      string // envDefault, "" when none
	hasDef   bool
	required bool // ,required: must be set
	notEmpty bool // ,notEmpty: must be set and non-empty
	typ      string
}

// envSpec reads every `env:"..."` struct tag of the non-test Go files in
// dir. It parses the source instead of importing the package, so that it
// also covers a package that is being written and does not build yet.
func envSpec(dirs string) (map[string]envVar, error) {
	fset := token.NewFileSet()
	vars := map[string]envVar{}
	first, rest, _ := strings.Cut(dirs, ",")
	if rest != "" {
		more, err := envSpec(filepath.Join(filepath.Dir(filepath.Dir(first)), rest))
		if err != nil {
			return nil, err
		}
		for k, v := range more {
			vars[k] = v
		}
	}
	dir := first
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		ast.Inspect(f, func(node ast.Node) bool {
			field, ok := node.(*ast.Field)
			if !ok || field.Tag == nil {
				return true
			}
			raw, err := strconv.Unquote(field.Tag.Value)
			if err != nil {
				return true
			}
			tag := reflect.StructTag(raw)
			spec, ok := tag.Lookup("env")
			if !ok || spec == "" {
				return true
			}
			parts := strings.Split(spec, ",")
			v := envVar{name: parts[0], typ: typeString(field.Type)}
			for _, opt := range parts[1:] {
				switch opt {
				case "required":
					v.required = true
				case "notEmpty":
					v.required, v.notEmpty = true, true
				}
			}
			v.def, v.hasDef = tag.Lookup("envDefault")
			vars[v.name] = v
			return true
		})
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("%s: no env struct tags found", dir)
	}
	return vars, nil
}

func typeString(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name
	case *ast.SelectorExpr:
		return typeString(t.X) + "." + t.Sel.Name
	case *ast.StarExpr:
		return "*" + typeString(t.X)
	case *ast.ArrayType:
		return "[]" + typeString(t.Elt)
	}
	return fmt.Sprintf("%T", e)
}

// checkValue reports whether s parses as a value of the Go type typ, the
// way github.com/caarlos0/env parses it.
func checkValue(typ, s string) error {
	var err error
	switch typ {
	case "int", "int64", "int32":
		_, err = strconv.ParseInt(s, 10, 64)
	case "uint", "uint64", "uint32":
		_, err = strconv.ParseUint(s, 10, 64)
	case "float64", "float32":
		_, err = strconv.ParseFloat(s, 64)
	case "bool":
		_, err = strconv.ParseBool(s)
	case "time.Duration":
		_, err = parseDuration(s)
	}
	return err
}

// Runtime variables that every Go binary understands besides its Config.
var goRuntimeVars = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GODEBUG": true, "GOGC": true}

func TestEnvSpecFindsTheConfigs(t *testing.T) {
	root := repoRoot(t)
	for _, svc := range services {
		spec, err := envSpec(filepath.Join(root, svc.configDir))
		if err != nil {
			t.Errorf("%s: %v", svc.name, err)
			continue
		}
		if _, ok := spec["PORT"]; !ok {
			t.Errorf("%s: no PORT in its Config", svc.name)
		}
		if _, ok := spec["SHUTDOWN_TIMEOUT"]; !ok {
			t.Errorf("%s: no SHUTDOWN_TIMEOUT in its Config", svc.name)
		}
		var names []string
		for n, v := range spec {
			if v.required {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		t.Logf("%s: %d variables, required: %v", svc.name, len(spec), names)
	}
	spec, err := envSpec(filepath.Join(root, "internal/auth"))
	if err != nil {
		t.Fatal(err)
	}
	if v := spec["JWT_SECRET"]; !v.required || !v.notEmpty {
		t.Errorf("auth JWT_SECRET = %+v, want required and notEmpty", v)
	}
}
