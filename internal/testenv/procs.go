package testenv

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildMu  sync.Mutex
	built    = map[string]string{}
	buildDir string
)

// Binary builds ./cmd/<name> of this module once per test process and
// returns the path of the executable.
func Binary(t testing.TB, name string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "mp3converter-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d // removed with the OS temp dir; binaries are shared by all tests of the process
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	p := filepath.Join(buildDir, name)
	cmd := exec.Command("go", "build", "-o", p, "./cmd/"+name)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	built[name] = p
	return p
}

// Proc is a service binary started by a test.
type Proc struct {
	t    testing.TB
	Name string
	Port int
	// OpsPort serves /readyz and /metrics when the binary has a port of
	// its own for them (the gateway's OPS_PORT); 0: they are on Port.
	OpsPort int
	cmd     *exec.Cmd
	out     *Buffer
	done    chan struct{}
}

// Start runs bin with env (added to PORT=port and PATH) and waits until
// GET /healthz answers on port. The process is killed in t.Cleanup. A
// gateway gets a free OPS_PORT unless env names one (so that gateways of
// parallel tests never share the default).
func Start(t testing.TB, name, bin string, port int, env map[string]string) *Proc {
	t.Helper()
	p := &Proc{t: t, Name: name, Port: port, out: &Buffer{}}
	if v, ok := env["OPS_PORT"]; ok {
		p.OpsPort, _ = strconv.Atoi(v)
	} else if filepath.Base(bin) == "gateway" {
		p.OpsPort = FreePort(t)
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		env["OPS_PORT"] = strconv.Itoa(p.OpsPort)
	}
	p.start(bin, env)
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- %s output (last 4 KiB) ---\n%s", name, p.out.Tail(4096))
		}
	})
	return p
}

func (p *Proc) start(bin string, env map[string]string) {
	p.t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + strconv.Itoa(p.Port), "LOG_LEVEL=debug"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.Name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(p.done) }()
	healthy := Poll(60*time.Second, func() bool {
		if resp, err := http.Get(p.URL() + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case <-p.done:
			p.t.Fatalf("%s exited at start:\n%s", p.Name, p.out.Tail(4096))
		default:
		}
		return false
	})
	if !healthy {
		p.t.Fatalf("%s did not answer /healthz on %d:\n%s", p.Name, p.Port, p.out.Tail(4096))
	}
}

// Restart starts the same binary again (after Kill or Signal) on the same port.
func (p *Proc) Restart(env map[string]string) {
	p.t.Helper()
	if _, ok := env["OPS_PORT"]; !ok && p.OpsPort != 0 {
		env = maps.Clone(env)
		if env == nil {
			env = map[string]string{}
		}
		env["OPS_PORT"] = strconv.Itoa(p.OpsPort)
	}
	p.start(p.cmd.Path, env)
}

// URL is http://127.0.0.1:<port>.
func (p *Proc) URL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.Port) }

// OpsURL is where /readyz and /metrics are: the ops port, or URL.
func (p *Proc) OpsURL() string {
	if p.OpsPort == 0 {
		return p.URL()
	}
	return fmt.Sprintf("http://127.0.0.1:%d", p.OpsPort)
}

// PID of the running process.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Output returns everything the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig and waits up to timeout for the process to exit; it
// reports whether it did.
func (p *Proc) Signal(sig syscall.Signal, timeout time.Duration) bool {
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Kill SIGKILLs the process group (the binary and any children, e.g. ffmpeg).
func (p *Proc) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// ExitCode is the exit status after the process ended (-1 if running or killed).
func (p *Proc) ExitCode() int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// RSS returns the current and peak resident set size in bytes (VmRSS, VmHWM).
func (p *Proc) RSS() (cur, peak int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			cur = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return cur, peak
}

// MigrateAuth runs `auth migrate` with env (the MYSQL_* variables), as the
// manifests' init container does before the auth server starts.
func MigrateAuth(t testing.TB, env map[string]string) {
	t.Helper()
	cmd := exec.Command(Binary(t, "auth"), "migrate")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("auth migrate: %v\n%s", err, out)
	}
}
