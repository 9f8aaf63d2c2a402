package deploytest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// TestCluster applies the manifests to a real Kubernetes control plane
// (etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from
// pinned Go modules by deploy/k8s/cluster.sh, with a fake kubelet that reports
// pods Running and Ready): every component set in componentSets is applied
// with strict server-side validation into a namespace of its own, and every
// Deployment and StatefulSet must roll out. It also proves that the server
// rejects a Deployment whose selector does not match its pod labels and, with
// strict validation, an unknown field.
//
// It runs only with MP3_K8S=1: the first run builds the control plane into a
// cache outside the repository (10-15 minutes on 2 cores), later runs start
// it in seconds.
func TestCluster(t *testing.T) {
	if os.Getenv("MP3_K8S") != "1" {
		t.Skip("MP3_K8S=1 not set: the manifests are not applied to a real control plane (deploy/k8s/cluster.sh)")
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatal("MP3_K8S=1 needs kubectl on PATH")
	}
	root := repoRoot(t)
	script := filepath.Join(root, "deploy", "k8s", "cluster.sh")
	if exec.Command("bash", script, "built").Run() != nil {
		if dl, ok := t.Deadline(); ok && time.Until(dl) < 25*time.Minute {
			t.Fatalf("the control plane is not built yet and the first build takes 10-15 minutes, more than this test's deadline allows (%v left): run `%s build` first or pass -timeout 40m",
				time.Until(dl).Round(time.Second), script)
		}
		t.Log("building the control plane (first run only, 10-15 minutes)")
	}

	run, err := os.MkdirTemp("", "mp3-k8s-run-")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "MP3_K8S_RUN="+run)
	t.Cleanup(func() {
		down := exec.Command("bash", script, "down")
		down.Env = env
		if t.Failed() {
			down.Env = append(down.Env, "MP3_K8S_KEEP=1")
			t.Logf("control-plane logs kept in %s/logs", run)
		}
		if out, err := down.CombinedOutput(); err != nil {
			t.Errorf("cluster.sh down: %v\n%s", err, out)
		}
		if !t.Failed() {
			os.RemoveAll(run)
		}
	})
	start := time.Now()
	up := exec.Command("bash", script, "up")
	up.Env = env
	if out, err := up.CombinedOutput(); err != nil {
		t.Fatalf("cluster.sh up: %v\n%s", err, out)
	}
	t.Logf("control plane up in %v", time.Since(start).Round(time.Second))
	k := &kube{config: filepath.Join(run, "kubeconfig")}

	// The keda component's ScaledObject and TriggerAuthentication need their
	// CRDs; KEDA itself is not installed, a minimal schema stands in.
	crds := filepath.Join(root, "deploy", "k8s", "crds", "keda-minimal.yaml")
	if out, err := k.run(t, nil, "apply", "--server-side", "--validate=strict", "-f", crds); err != nil {
		t.Fatalf("install KEDA CRDs: %v\n%s", err, out)
	}
	if out, err := k.run(t, nil, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/scaledobjects.keda.sh", "crd/triggerauthentications.keda.sh"); err != nil {
		t.Fatalf("KEDA CRDs not established: %v\n%s", err, out)
	}

	t.Run("BrokenManifestsRejected", func(t *testing.T) { testBrokenManifests(t, k) })

	t.Run("Apply", func(t *testing.T) {
		for _, comps := range componentSets {
			t.Run(setName(comps), func(t *testing.T) {
				t.Parallel()
				applyAndRollOut(t, k, comps)
			})
		}
	})
}

// kube runs kubectl against the test control plane.
type kube struct{ config string }

func (k *kube) run(t testing.TB, stdin []byte, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig=" + k.config}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// applyArgs is how every manifest is applied: server-side, so the API
// server's own schema and validation judge it, and strict, so an unknown or
// duplicate field is an error rather than a warning.
var applyArgs = []string{"apply", "--server-side", "--validate=strict", "--field-manager=mp3converter-test"}

func namespaceFor(comps []string) string {
	return "mp3-" + strings.ReplaceAll(setName(comps), "+", "-")
}

func toYAML(t testing.TB, objs []obj) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, o := range objs {
		y, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes()
}

// persistentVolumes pre-binds one PersistentVolume to each claim that the
// StatefulSets' volumeClaimTemplates will create in ns: the test cluster has
// no dynamic provisioner.
func persistentVolumes(t testing.TB, ns string, objs []obj) []obj {
	t.Helper()
	var pvs []obj
	for _, o := range objs {
		if str(o, "kind") != "StatefulSet" {
			continue
		}
		replicas := 1
		if r, ok := get(o, "spec", "replicas").(float64); ok {
			replicas = int(r)
		}
		for _, v := range listAt(o, "spec", "volumeClaimTemplates") {
			tmpl, _ := v.(map[string]any)
			size := str(tmpl, "spec", "resources", "requests", "storage")
			if size == "" {
				t.Fatalf("%s: volumeClaimTemplate %s requests no storage", id(o), str(tmpl, "metadata", "name"))
			}
			modes := listAt(tmpl, "spec", "accessModes")
			class := str(tmpl, "spec", "storageClassName")
			for i := 0; i < replicas; i++ {
				claim := fmt.Sprintf("%s-%s-%d", str(tmpl, "metadata", "name"), str(o, "metadata", "name"), i)
				name := ns + "-" + claim
				pvs = append(pvs, obj{
					"apiVersion": "v1",
					"kind":       "PersistentVolume",
					"metadata": obj{
						"name":   name,
						"labels": obj{"mp3converter.test/namespace": ns},
					},
					"spec": obj{
						"capacity":                      obj{"storage": size},
						"accessModes":                   modes,
						"storageClassName":              class,
						"persistentVolumeReclaimPolicy": "Retain",
						"claimRef":                      obj{"namespace": ns, "name": claim},
						// Nothing mounts it: the kubelet is fake.
						"hostPath": obj{"path": "/tmp/mp3converter-test-pv/" + name},
					},
				})
			}
		}
	}
	return pvs
}

func applyAndRollOut(t *testing.T, k *kube, comps []string) {
	objs := renderSet(t, comps)
	ns := namespaceFor(comps)
	// A namespace of its own per set, created before anything is applied
	// into it (a server-side dry run needs it too).
	if out, err := k.run(t, nil, "create", "namespace", ns); err != nil {
		t.Fatalf("create namespace %s: %v\n%s", ns, err, out)
	}
	if pvs := persistentVolumes(t, ns, objs); len(pvs) > 0 {
		if out, err := k.run(t, toYAML(t, pvs), append(applyArgs, "-f", "-")...); err != nil {
			t.Fatalf("create PersistentVolumes: %v\n%s", err, out)
		}
	}
	out, err := k.run(t, toYAML(t, objs), append(applyArgs, "-n", ns, "-f", "-")...)
	if err != nil {
		t.Fatalf("kubectl apply of %s: %v\n%s", setName(comps), err, out)
	}
	if strings.Contains(strings.ToLower(out), "warning") {
		t.Errorf("kubectl apply of %s warned:\n%s", setName(comps), out)
	}
	var workloads []string
	for _, o := range objs {
		switch str(o, "kind") {
		case "Deployment", "StatefulSet":
			workloads = append(workloads, strings.ToLower(str(o, "kind"))+"/"+str(o, "metadata", "name"))
		}
	}
	if len(workloads) == 0 {
		t.Fatalf("%s renders no Deployment or StatefulSet", setName(comps))
	}
	for _, w := range workloads {
		if out, err := k.run(t, nil, "rollout", "status", "-n", ns, w, "--timeout=240s"); err != nil {
			diag, _ := k.run(t, nil, "get", "-n", ns, "pods,pvc,replicasets,statefulsets,deployments,events", "-o", "wide")
			t.Fatalf("rollout of %s in %s: %v\n%s\n--- namespace %s:\n%s", w, ns, err, out, ns, diag)
		}
	}
	// Everything applied is there, under its own name.
	for _, o := range objs {
		resource := str(o, "kind")
		if g := apiGroup(o); g != "" {
			resource += "." + g
		}
		if out, err := k.run(t, nil, "get", "-n", ns, resource, str(o, "metadata", "name"), "-o", "name"); err != nil {
			t.Errorf("%s not found after apply: %v\n%s", id(o), err, out)
		}
	}
	t.Logf("%s: %d objects applied, %d workloads rolled out", setName(comps), len(objs), len(workloads))
}

// apiGroup is the group of o's apiVersion, "" for the core group.
func apiGroup(o obj) string {
	g, _, ok := strings.Cut(str(o, "apiVersion"), "/")
	if !ok {
		return ""
	}
	return g
}

// testBrokenManifests proves that the way the manifests are applied catches
// mistakes: the unchanged Deployment is accepted (a control), the same one
// with pod labels that its selector does not match is refused by the API
// server, and one with a misspelt field is refused by strict validation,
// server-side and client-side, for a built-in kind and for a CRD.
func testBrokenManifests(t *testing.T, k *kube) {
	const ns = "mp3-broken"
	if out, err := k.run(t, nil, "create", "namespace", ns); err != nil {
		t.Fatalf("create namespace: %v\n%s", err, out)
	}
	base := renderSet(t, nil)
	dep := base[find(base, "Deployment", "auth")]
	dryRun := func(o obj, serverSide bool) (string, error) {
		args := []string{"apply", "--validate=strict", "--dry-run=server", "-n", ns, "-f", "-"}
		if serverSide {
			args = append(args, "--server-side", "--field-manager=mp3converter-test")
		}
		return k.run(t, toYAML(t, []obj{o}), args...)
	}
	for _, serverSide := range []bool{true, false} {
		mode := map[bool]string{true: "server-side", false: "client-side"}[serverSide]
		if out, err := dryRun(deepCopy([]obj{dep})[0], serverSide); err != nil {
			t.Fatalf("%s apply of the unchanged auth Deployment fails, so nothing below would prove anything: %v\n%s", mode, err, out)
		}
	}

	t.Run("SelectorMismatch", func(t *testing.T) {
		o := deepCopy([]obj{dep})[0]
		mapAt(o, "spec", "template", "metadata", "labels")["app"] = "auth-typo"
		out, err := dryRun(o, true)
		if err == nil {
			t.Fatalf("a Deployment whose selector does not match its pod labels was accepted:\n%s", out)
		}
		if !strings.Contains(out, "does not match template") {
			t.Errorf("rejected, but not for the selector: %s", out)
		}
		t.Logf("rejected: %s", strings.TrimSpace(out))
	})

	type misspelt struct {
		name  string
		obj   obj
		field string
	}
	var unknown []misspelt
	{
		o := deepCopy([]obj{dep})[0]
		mapAt(o, "spec")["replica"] = 2
		unknown = append(unknown, misspelt{"DeploymentSpec", o, "replica"})
	}
	{
		o := deepCopy([]obj{dep})[0]
		c := listAt(o, "spec", "template", "spec", "containers")[0].(map[string]any) // not the init container: it has no probe
		c["readinessProbes"] = c["readinessProbe"]
		delete(c, "readinessProbe")
		unknown = append(unknown, misspelt{"Container", o, "readinessProbes"})
	}
	{
		keda := renderSet(t, []string{"keda"})
		o := deepCopy([]obj{keda[find(keda, "ScaledObject", "converter")]})[0]
		spec := mapAt(o, "spec")
		spec["maxReplicas"] = spec["maxReplicaCount"]
		delete(spec, "maxReplicaCount")
		unknown = append(unknown, misspelt{"ScaledObjectCRD", o, "maxReplicas"})
	}
	for _, u := range unknown {
		for _, serverSide := range []bool{true, false} {
			mode := map[bool]string{true: "ServerSide", false: "ClientSide"}[serverSide]
			t.Run("UnknownField/"+u.name+"/"+mode, func(t *testing.T) {
				out, err := dryRun(u.obj, serverSide)
				if err == nil {
					t.Fatalf("unknown field %q accepted with --validate=strict:\n%s", u.field, out)
				}
				if !strings.Contains(out, u.field) ||
					!(strings.Contains(out, "unknown field") || strings.Contains(out, "field not declared in schema")) {
					t.Errorf("rejected, but not for the unknown field %q: %s", u.field, out)
				}
				t.Logf("rejected: %s", strings.TrimSpace(out))
			})
		}
	}
}
