package deploytest

import (
	"maps"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"mp3converter/internal/auth"
	"mp3converter/internal/converter"
	"mp3converter/internal/gateway"
	"mp3converter/internal/notification"
)

// service is what the tests know of one binary of the suite.
type service struct {
	name     string
	replicas int
	config   reflect.Type // the binary's Config: its env tags are what it reads
}

var services = []service{
	{"auth", 2, reflect.TypeFor[auth.Config]()},
	{"gateway", 2, reflect.TypeFor[gateway.Config]()},
	{"converter", 4, reflect.TypeFor[converter.Config]()},
	{"notification", 4, reflect.TypeFor[notification.Config]()},
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

// envSpec lists the variables a Config reads, walking its fields as
// github.com/caarlos0/env does: a field with an env tag is a variable, a
// struct field without one (embedded or not) is read field by field.
func envSpec(t reflect.Type) map[string]envVar {
	vars := map[string]envVar{}
	for i := range t.NumField() {
		f := t.Field(i)
		spec, tagged := f.Tag.Lookup("env")
		if !tagged {
			if f.Type.Kind() == reflect.Struct {
				maps.Copy(vars, envSpec(f.Type))
			}
			continue
		}
		parts := strings.Split(spec, ",")
		if parts[0] == "" || parts[0] == "-" {
			continue
		}
		v := envVar{name: parts[0], typ: typeName(f.Type)}
		for _, opt := range parts[1:] {
			switch opt {
			case "required":
				v.required = true
			case "notEmpty":
				v.required, v.notEmpty = true, true
			}
		}
		v.def, v.hasDef = f.Tag.Lookup("envDefault")
		vars[v.name] = v
	}
	return vars
}

// typeName is what checkValue knows a field's type by: time.Duration, a
// basic kind (int, int64, float64, bool, string), or the type's name.
func typeName(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "time.Duration"
	}
	if t.PkgPath() == "" || t.Kind() <= reflect.Float64 {
		return t.Kind().String()
	}
	return t.String()
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
	for _, svc := range services {
		spec := envSpec(svc.config)
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
	spec := envSpec(services[0].config)
	if _, ok := spec["LOG_LEVEL"]; !ok {
		t.Error("auth: LOG_LEVEL (an embedded piece) not found")
	}
	if v := spec["JWT_SECRET"]; !v.required || !v.notEmpty {
		t.Errorf("auth JWT_SECRET = %+v, want required and notEmpty", v)
	}
}
