package testenv

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// DebianPython is the interpreter of Debian's python3 package: the one
// that imports Debian's python3-* packages. The python3 first on PATH may be
// another build (pyenv) without them.
const DebianPython = "/usr/bin/python3"

// pythonFlags keep the interpreter to Debian's own packages: -E ignores
// PYTHON* variables (PYTHONPATH, PYTHONHOME), -s the user's site-packages;
// -B writes no __pycache__ beside the scripts.
var pythonFlags = []string{"-E", "-s", "-B"}

// Python returns DebianPython after checking that it imports every one of
// modules; when it is absent or a module is missing the test is skipped
// with the packages to install (deploy/stack.sh up installs them). Any
// other failure to import fails the test.
func Python(t testing.TB, modules ...string) string {
	t.Helper()
	if _, err := os.Stat(DebianPython); err != nil {
		t.Skipf("%s is missing: install Debian's python3 (deploy/stack.sh up does)", DebianPython)
	}
	// Try each module; print the ones that are not installed.
	check := `import importlib, sys
for m in sys.argv[1:]:
    try:
        importlib.import_module(m)
    except ModuleNotFoundError as e:
        if e.name != m:
            raise
        print(m)`
	args := append(append(append([]string(nil), pythonFlags...), "-c", check), modules...)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(DebianPython, args...)
	cmd.Env = pythonEnv(nil)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s cannot import %s: %v\n%s", DebianPython, strings.Join(modules, ", "), err, stderr.String())
	}
	if missing := strings.Fields(stdout.String()); len(missing) > 0 {
		// Debian packages module m as python3-m (pymongo, bson, gridfs, pika, jwt).
		var pkgs []string
		for _, m := range missing {
			pkgs = append(pkgs, "python3-"+m)
		}
		t.Skipf("%s lacks the Python modules %s: deploy/stack.sh up installs them (apt-get install %s)",
			DebianPython, strings.Join(missing, ", "), strings.Join(pkgs, " "))
	}
	return DebianPython
}

// PythonCommand is the command that runs script with args under python
// (the interpreter Python returned), with pythonFlags and only PATH, HOME
// and env in its environment.
func PythonCommand(ctx context.Context, python, script string, env map[string]string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, python, append(append(append([]string(nil), pythonFlags...), script), args...)...)
	cmd.Env = pythonEnv(env)
	return cmd
}

// RunPython runs script with args and env (see PythonCommand), for at most
// two minutes, and returns its standard output without surrounding
// whitespace. When the script fails the test fails with its standard error.
func RunPython(t testing.TB, python, script string, env map[string]string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := PythonCommand(ctx, python, script, env, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", script, strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

func pythonEnv(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}
