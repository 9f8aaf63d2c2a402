package deploytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"mp3converter/internal/testenv"
)

// TestRealNode deploys the suite the way `make k8s-up` does (the four
// images built from the Dockerfiles, a real kubelet with containerd, runc,
// CNI, kube-proxy and CoreDNS joined to the control plane, the manifests
// with host-databases pointed at this machine's servers) and uses it from
// outside like a user: the curl journey through the gateway's NodePort,
// then a converter pod killed mid-conversion and a rolling restart of the
// gateway under uploads. It also checks that every container runs as
// non-root on a read-only root filesystem and that no container restarted.
//
// It runs with MP3_K8S=1 and MP3_STACK=1, as root. If a deployment from
// `make k8s-up` is running, it is used and left running; otherwise the test
// starts one and removes it at the end.
func TestRealNode(t *testing.T) {
	if os.Getenv("MP3_K8S") != "1" || os.Getenv("MP3_STACK") != "1" {
		t.Skip("MP3_K8S=1 and MP3_STACK=1 not set: the suite is not deployed on a real local node (make k8s-up)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the local node needs root (containers, mounts, iptables)")
	}
	root := repoRoot(t)
	up := filepath.Join(root, "deploy", "k8s", "up.sh")
	env := readEnv(t, exec.Command("bash", up, "env"))
	if env == nil {
		start := time.Now()
		cmd := exec.Command("bash", up, "up")
		var logs bytes.Buffer
		cmd.Stderr = &logs
		env = readEnv(t, cmd)
		if env == nil {
			t.Fatalf("deploy/k8s/up.sh up failed:\n%s", tail(logs.String(), 6000))
		}
		t.Logf("suite deployed on the local node in %v", time.Since(start).Round(time.Second))
		t.Cleanup(func() {
			if t.Failed() {
				kubectlLog(t, env, "get", "pods", "-A", "-o", "wide")
			}
			if out, err := exec.Command("bash", up, "down").CombinedOutput(); err != nil {
				t.Errorf("up.sh down: %v\n%s", err, out)
			}
		})
	}
	for _, k := range []string{"GATEWAY_URL", "AUTH_URL", "MAILPIT_API", "MONGODB_URI", "RABBITMQ_URL",
		"MYSQL_DSN", "JWT_SECRET", "VIDEO_QUEUE", "MP3_QUEUE"} {
		if env[k] == "" {
			t.Fatalf("up.sh printed no %s (got %v)", k, env)
		}
	}
	n := &node{t: t, env: env, gw: env["GATEWAY_URL"]}
	n.mongoConnect()

	email := testenv.MailAddress("k8s")
	n.addUser(email)
	tok := n.login(email)

	t.Run("journey", func(t *testing.T) {
		// An MP4 as ffmpeg writes it by default: its index at the end, so
		// the converter needs its scratch emptyDir (the root is read-only).
		video := testenv.Video(t, "clip-60s.mp4", 60, "320x240", 10)
		fid := n.upload(t, tok, video)
		mail := (&testenv.Mailpit{API: strings.TrimSuffix(env["MAILPIT_API"], "/api/v1")}).WaitFor(t, email, 3*time.Minute)
		if !strings.Contains(mail.Text, fid) {
			t.Errorf("the email does not name the MP3 %s:\n%s", fid, mail.Text)
		}
		mp3 := n.download(t, tok, fid)
		p := testenv.FFprobe(t, mp3)
		format, dur := p.Format.FormatName, p.Seconds()
		if format != "mp3" || dur < 59 || dur > 61 {
			t.Fatalf("ffprobe says %s, %.2f s; want mp3, 60 s", format, dur)
		}
	})

	t.Run("non-root, read-only root", func(t *testing.T) { n.checkContainers(t) })

	t.Run("converter pod deleted mid-conversion", func(t *testing.T) {
		// Twenty minutes of sound behind a tiny picture: long enough to
		// catch the conversion in flight.
		fid := n.upload(t, tok, testenv.Video(t, "clip-1200s.mp4", 1200, "64x64", 1))
		var holder string
		testenv.Eventually(t, 2*time.Minute, "a converter holds the video's lease", func() bool {
			holder = n.leaseHolder(fid)
			return holder != ""
		})
		t.Logf("deleting %s, which converts %s", holder, fid)
		kubectl(t, env, "-n", "mp3converter", "delete", "pod", holder, "--grace-period=1", "--wait=false")
		n.waitJob(t, tok, fid, "done", 5*time.Minute)
		if c := n.mp3Files(t, fid); c != 1 {
			t.Fatalf("%d MP3 files for %s, want 1", c, fid)
		}
		kubectl(t, env, "-n", "mp3converter", "rollout", "status", "deployment/converter", "--timeout=180s")
	})

	t.Run("gateway rolling restart under uploads", func(t *testing.T) {
		// Three clients upload one after the other (each waits for its job,
		// within USER_MAX_ACTIVE) while the gateway's pods are replaced.
		clip := testenv.Video(t, "clip-2s.mp4", 2, "160x120", 5)
		stop := make(chan struct{})
		var mu sync.Mutex
		var accepted []string
		refused := map[string]int{}
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					fid, err := n.tryUpload(tok, clip)
					mu.Lock()
					if err == nil {
						accepted = append(accepted, fid)
					} else {
						refused[err.Error()]++
					}
					mu.Unlock()
					if err == nil {
						_ = n.jobDone(tok, fid, 2*time.Minute)
					}
				}
			}()
		}
		kubectl(t, env, "-n", "mp3converter", "rollout", "restart", "deployment/gateway")
		kubectl(t, env, "-n", "mp3converter", "rollout", "status", "deployment/gateway", "--timeout=180s")
		close(stop)
		wg.Wait()
		t.Logf("during the restart: %d uploads answered 200; the others: %v", len(accepted), refused)
		if len(accepted) == 0 {
			t.Fatal("no upload succeeded during the restart")
		}
		for _, fid := range accepted {
			n.waitJob(t, tok, fid, "done", 5*time.Minute)
		}
	})

	t.Run("probes answered, no restarts", func(t *testing.T) {
		var pods struct {
			Items []struct {
				Metadata struct {
					Name              string  `json:"name"`
					DeletionTimestamp *string `json:"deletionTimestamp"`
				} `json:"metadata"`
				Status struct {
					ContainerStatuses []struct {
						Name         string `json:"name"`
						Ready        bool   `json:"ready"`
						RestartCount int    `json:"restartCount"`
					} `json:"containerStatuses"`
				} `json:"status"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(kubectl(t, env, "-n", "mp3converter", "get", "pods", "-o", "json")), &pods); err != nil {
			t.Fatal(err)
		}
		for _, p := range pods.Items {
			if p.Metadata.DeletionTimestamp != nil {
				continue // an old pod of the restart, on its way out
			}
			for _, c := range p.Status.ContainerStatuses {
				if c.RestartCount != 0 || !c.Ready {
					t.Errorf("pod %s container %s: ready %v, %d restarts", p.Metadata.Name, c.Name, c.Ready, c.RestartCount)
				}
			}
		}
	})
}

// readEnv runs cmd and returns the KEY=VALUE lines of its output; nil if it failed.
func readEnv(t *testing.T, cmd *exec.Cmd) map[string]string {
	t.Helper()
	out, err := cmd.Output()
	if err != nil {
		return nil
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && k == strings.ToUpper(k) && !strings.ContainsAny(k, " :") {
			env[k] = v
		}
	}
	return env
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func kubectl(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", env["KUBECONFIG"]}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func kubectlLog(t *testing.T, env map[string]string, args ...string) {
	out, _ := exec.Command("kubectl", append([]string{"--kubeconfig", env["KUBECONFIG"]}, args...)...).CombinedOutput()
	t.Logf("kubectl %s:\n%s", strings.Join(args, " "), out)
}

// node is the deployed suite as a client outside the cluster sees it.
type node struct {
	t     *testing.T
	env   map[string]string
	gw    string
	mongo *mongo.Client
}

var nodeClient = &http.Client{Timeout: 2 * time.Minute}

func (n *node) mongoConnect() {
	c, err := mongo.Connect(options.Client().ApplyURI(n.env["MONGODB_URI"]))
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	n.mongo = c
}

// addUser runs the operator command against the deployment's database, as
// the README says: `auth user add` with the MYSQL_* of MYSQL_DSN.
func (n *node) addUser(email string) {
	dsn := n.env["MYSQL_DSN"] // user:password@tcp(host:port)/db
	cred, rest, _ := strings.Cut(dsn, "@tcp(")
	user, pass, _ := strings.Cut(cred, ":")
	addr, db, _ := strings.Cut(rest, ")/")
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(testenv.Binary(n.t, "auth"), "user", "add", "--email", email)
	cmd.Env = append(os.Environ(), "MYSQL_HOST="+host, "MYSQL_PORT="+port, "MYSQL_USER="+user,
		"MYSQL_PASSWORD="+pass, "MYSQL_DB="+db, "JWT_SECRET="+n.env["JWT_SECRET"])
	cmd.Stdin = strings.NewReader("pw\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("auth user add: %v\n%s", err, out)
	}
}

func (n *node) login(email string) string {
	req, _ := http.NewRequest("POST", n.gw+"/login", nil)
	req.SetBasicAuth(email, "pw")
	resp, err := nodeClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		n.t.Fatalf("login: %d %q", resp.StatusCode, b)
	}
	return string(b)
}

// tryUpload posts the file as `curl -F file=@path` does; the fid on 200.
func (n *node) tryUpload(tok, file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	part, _ := mw.CreateFormFile("file", filepath.Base(file))
	if _, err := io.Copy(part, f); err != nil {
		return "", err
	}
	mw.Close()
	req, _ := http.NewRequest("POST", n.gw+"/upload", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := nodeClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("upload: %d %q", resp.StatusCode, b)
	}
	return path.Base(resp.Header.Get("Location")), nil
}

func (n *node) upload(t *testing.T, tok, file string) string {
	t.Helper()
	fid, err := n.tryUpload(tok, file)
	if err != nil {
		t.Fatal(err)
	}
	return fid
}

func (n *node) download(t *testing.T, tok, fid string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", n.gw+"/download?fid="+fid, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := nodeClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := filepath.Join(t.TempDir(), fid+".mp3")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("download: %d %v", resp.StatusCode, err)
	}
	return p
}

// jobStatus is the job's status as GET /jobs/{id} says it, or "".
func (n *node) jobStatus(tok, fid string) string {
	req, _ := http.NewRequest("GET", n.gw+"/jobs/"+fid, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := nodeClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var j struct{ Status string }
	if json.NewDecoder(resp.Body).Decode(&j) != nil {
		return ""
	}
	return j.Status
}

// jobDone waits (without failing a test: safe in goroutines) for the job to end.
func (n *node) jobDone(tok, fid string, within time.Duration) bool {
	return testenv.Poll(within, func() bool { s := n.jobStatus(tok, fid); return s == "done" || s == "failed" })
}

func (n *node) waitJob(t *testing.T, tok, fid, want string, within time.Duration) {
	t.Helper()
	testenv.Eventually(t, within, "job "+fid+" "+want, func() bool {
		status := n.jobStatus(tok, fid)
		if status == "failed" && want != "failed" {
			t.Fatalf("job %s failed", fid)
		}
		return status == want
	})
}

// leaseHolder is the host (the pod) of the converter that holds the
// video's lease, or "".
func (n *node) leaseHolder(fid string) string {
	var l struct {
		Host string `bson:"host"`
	}
	err := n.mongo.Database(n.env["MONGODB_VIDEOS_DB"]).Collection("leases").
		FindOne(context.Background(), bson.D{{Key: "_id", Value: fid}}).Decode(&l)
	if err != nil {
		return ""
	}
	return l.Host
}

func (n *node) mp3Files(t *testing.T, fid string) int64 {
	t.Helper()
	id, err := bson.ObjectIDFromHex(fid)
	if err != nil {
		t.Fatal(err)
	}
	c, err := n.mongo.Database(n.env["MONGODB_MP3S_DB"]).Collection("fs.files").
		CountDocuments(context.Background(), bson.D{{Key: "_id", Value: id}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkContainers looks at every container of the suite from the node's
// side: the process's real user and its root mount.
func (n *node) checkContainers(t *testing.T) {
	var pods struct {
		Items []struct {
			Metadata struct{ Name string } `json:"metadata"`
			Status   struct {
				ContainerStatuses []struct {
					Name        string `json:"name"`
					ContainerID string `json:"containerID"`
				} `json:"containerStatuses"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, n.env, "-n", "mp3converter", "get", "pods", "-o", "json")), &pods); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, p := range pods.Items {
		for _, c := range p.Status.ContainerStatuses {
			id := strings.TrimPrefix(c.ContainerID, "containerd://")
			pid, err := os.ReadFile(filepath.Join(n.env["MP3_NODE_DIR"], "containerd-state", "io.containerd.runtime.v2.task", "k8s.io", id, "init.pid"))
			if err != nil {
				t.Errorf("%s/%s: no init pid: %v", p.Metadata.Name, c.Name, err)
				continue
			}
			proc := "/proc/" + strings.TrimSpace(string(pid))
			status, err := os.ReadFile(proc + "/status")
			if err != nil {
				t.Errorf("%s/%s: %v", p.Metadata.Name, c.Name, err)
				continue
			}
			for _, line := range strings.Split(string(status), "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
					if uid, _ := strconv.Atoi(f[1]); uid == 0 {
						t.Errorf("%s/%s runs as root", p.Metadata.Name, c.Name)
					}
				}
			}
			mounts, _ := os.ReadFile(proc + "/mounts")
			rootRO := false
			for _, line := range strings.Split(string(mounts), "\n") {
				if f := strings.Fields(line); len(f) > 3 && f[1] == "/" {
					rootRO = strings.HasPrefix(f[3], "ro,") || f[3] == "ro"
				}
			}
			if !rootRO {
				t.Errorf("%s/%s: its root filesystem is writable", p.Metadata.Name, c.Name)
			}
			seen++
		}
	}
	if seen < 8 {
		t.Errorf("checked %d containers, want the 8 of the four Deployments", seen)
	}
}
