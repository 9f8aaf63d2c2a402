package deploytest

import (
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mp3converter/internal/auth"
	"mp3converter/internal/config"
	"mp3converter/internal/gateway"
	"mp3converter/internal/httpx"
	"mp3converter/internal/notification"
)

// checkManifests returns every problem found in a rendered set of objects;
// nil means none. specs are the binaries' env specs by service name.
func checkManifests(objs []obj, specs map[string]map[string]envVar) []error {
	c := &checker{objs: objs}
	for _, o := range objs {
		if podSpec(o) != nil {
			c.checkWorkload(o)
		}
		switch str(o, "kind") {
		case "Service":
			c.checkService(o)
		case "PodDisruptionBudget":
			c.checkSelects(o, mapAt(o, "spec", "selector", "matchLabels"))
		case "HorizontalPodAutoscaler", "ScaledObject":
			ref := mapAt(o, "spec", "scaleTargetRef")
			kind := str(ref, "kind")
			if kind == "" {
				kind = "Deployment"
			}
			if find(objs, kind, str(ref, "name")) < 0 {
				c.errf(o, "scaleTargetRef %s/%s does not exist", kind, str(ref, "name"))
			}
			for _, tr := range listAt(o, "spec", "triggers") {
				if n := str(tr, "authenticationRef", "name"); n != "" && find(objs, "TriggerAuthentication", n) < 0 {
					c.errf(o, "authenticationRef %s does not exist", n)
				}
			}
		case "TriggerAuthentication":
			for _, ref := range listAt(o, "spec", "secretTargetRef") {
				c.checkKeyRef(o, "Secret", str(ref, "name"), str(ref, "key"), false)
			}
		case "Ingress":
			c.checkIngress(o)
		case "NetworkPolicy":
			c.checkNetworkPolicy(o)
		case "Secret":
			if str(o, "metadata", "annotations", "mp3converter/development-values") != "true" {
				c.errf(o, "a Secret in git must be annotated mp3converter/development-values: \"true\"")
			}
			for k, v := range mapAt(o, "data") {
				s, _ := v.(string)
				if _, err := base64.StdEncoding.DecodeString(s); err != nil {
					c.errf(o, "data.%s is not base64: %v", k, err)
				}
			}
		}
	}
	for _, svc := range services {
		c.checkBinary(svc, specs[svc.name])
	}
	c.checkConsumerTimeout()
	return c.errs
}

type checker struct {
	objs []obj
	errs []error
}

func (c *checker) errf(o obj, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", id(o), fmt.Sprintf(format, args...)))
}

// matches reports whether selector (matchLabels) selects labels.
func matches(selector, labels obj) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// selected returns the workloads whose pods selector selects.
func (c *checker) selected(selector obj) []obj {
	var out []obj
	for _, o := range c.objs {
		if podSpec(o) != nil && matches(selector, podLabels(o)) {
			out = append(out, o)
		}
	}
	return out
}

func (c *checker) checkSelects(o, selector obj) []obj {
	w := c.selected(selector)
	if len(w) == 0 {
		c.errf(o, "selector %v selects no pods", selector)
	}
	return w
}

// checkKeyRef checks that a ConfigMap or Secret exists and holds key ("" for
// any key).
func (c *checker) checkKeyRef(o obj, kind, name, key string, optional bool) {
	if optional {
		return
	}
	i := find(c.objs, kind, name)
	if i < 0 {
		c.errf(o, "%s %q does not exist", kind, name)
		return
	}
	if key == "" {
		return
	}
	src := c.objs[i]
	if _, ok := mapAt(src, "data")[key]; ok {
		return
	}
	if _, ok := mapAt(src, "stringData")[key]; ok {
		return
	}
	if _, ok := mapAt(src, "binaryData")[key]; ok {
		return
	}
	c.errf(o, "%s %q has no key %q", kind, name, key)
}

// containerPort resolves a port (a number or a name) on a container.
func containerPort(ctr obj, port any) (int, bool) {
	for _, p := range listAt(ctr, "ports") {
		n, _ := get(p, "containerPort").(float64)
		switch v := port.(type) {
		case float64:
			if v == n {
				return int(n), true
			}
		case string:
			if str(p, "name") == v {
				return int(n), true
			}
		}
	}
	return 0, false
}

var imageTag = regexp.MustCompile(`^:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func (c *checker) checkWorkload(o obj) {
	ps := podSpec(o)
	sel := mapAt(o, "spec", "selector", "matchLabels")
	if len(sel) == 0 || !matches(sel, podLabels(o)) {
		c.errf(o, "selector.matchLabels %v does not match the pod template's labels %v", sel, podLabels(o))
	}
	psc := mapAt(ps, "securityContext")
	volumes := map[string]obj{}
	for _, v := range listAt(ps, "volumes") {
		volumes[str(v, "name")] = v.(map[string]any)
		if cm := str(v, "configMap", "name"); cm != "" {
			c.checkKeyRef(o, "ConfigMap", cm, "", get(v, "configMap", "optional") == true)
			for _, it := range listAt(v, "configMap", "items") {
				c.checkKeyRef(o, "ConfigMap", cm, str(it, "key"), get(v, "configMap", "optional") == true)
			}
		}
		if s := str(v, "secret", "secretName"); s != "" {
			c.checkKeyRef(o, "Secret", s, "", get(v, "secret", "optional") == true)
			for _, it := range listAt(v, "secret", "items") {
				c.checkKeyRef(o, "Secret", s, str(it, "key"), get(v, "secret", "optional") == true)
			}
		}
	}
	for _, t := range listAt(o, "spec", "volumeClaimTemplates") {
		volumes[str(t, "metadata", "name")] = obj{"persistentVolumeClaim": obj{}}
	}
	initNames := map[string]bool{}
	for _, ic := range listAt(ps, "initContainers") {
		initNames[str(ic, "name")] = true
	}
	for _, ctr := range containers(o) {
		name := str(ctr, "name")
		where := fmt.Sprintf("container %s: ", name)
		csc := mapAt(ctr, "securityContext")
		if get(csc, "runAsNonRoot") != true && get(psc, "runAsNonRoot") != true {
			c.errf(o, "%srunAsNonRoot is not true", where)
		}
		if uid, ok := get(csc, "runAsUser").(float64); ok && uid == 0 {
			c.errf(o, "%sruns as UID 0", where)
		} else if uid, ok := get(psc, "runAsUser").(float64); ok && uid == 0 && get(csc, "runAsUser") == nil {
			c.errf(o, "%sruns as UID 0", where)
		}
		if str(csc, "seccompProfile", "type") != "RuntimeDefault" &&
			!(get(csc, "seccompProfile") == nil && str(psc, "seccompProfile", "type") == "RuntimeDefault") {
			c.errf(o, "%sseccompProfile is not RuntimeDefault", where)
		}
		if get(csc, "allowPrivilegeEscalation") != false {
			c.errf(o, "%sallowPrivilegeEscalation is not false", where)
		}
		if get(csc, "readOnlyRootFilesystem") != true {
			c.errf(o, "%sreadOnlyRootFilesystem is not true", where)
		}
		if get(csc, "privileged") == true {
			c.errf(o, "%sprivileged", where)
		}
		dropAll := false
		for _, d := range listAt(csc, "capabilities", "drop") {
			dropAll = dropAll || d == "ALL"
		}
		if !dropAll || len(listAt(csc, "capabilities", "add")) > 0 {
			c.errf(o, "%scapabilities must drop ALL and add none", where)
		}
		for _, kind := range []string{"requests", "limits"} {
			for _, r := range []string{"cpu", "memory"} {
				if get(ctr, "resources", kind, r) == nil {
					c.errf(o, "%sresources.%s.%s is not set", where, kind, r)
				}
			}
		}
		image := str(ctr, "image")
		if _, rest := splitImage(image); !strings.Contains(rest, "@sha256:") {
			tag, _, _ := strings.Cut(rest, "@")
			if !imageTag.MatchString(tag) || tag == ":latest" {
				c.errf(o, "%simage %q has no explicit tag (or is latest)", where, image)
			}
		}
		if !initNames[name] {
			for _, probe := range []string{"livenessProbe", "readinessProbe"} {
				if get(ctr, probe) == nil {
					c.errf(o, "%sno %s", where, probe)
				}
			}
		}
		for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
			p := mapAt(ctr, probe)
			for _, handler := range []string{"httpGet", "tcpSocket", "grpc"} {
				if h := mapAt(p, handler); h != nil {
					if _, ok := containerPort(ctr, h["port"]); !ok {
						c.errf(o, "%s%s port %v is not a containerPort", where, probe, h["port"])
					}
				}
			}
		}
		for _, m := range listAt(ctr, "volumeMounts") {
			if _, ok := volumes[str(m, "name")]; !ok {
				c.errf(o, "%svolumeMount %q has no volume", where, str(m, "name"))
			}
		}
		for _, ef := range listAt(ctr, "envFrom") {
			if n := str(ef, "configMapRef", "name"); n != "" {
				c.checkKeyRef(o, "ConfigMap", n, "", get(ef, "configMapRef", "optional") == true)
			}
			if n := str(ef, "secretRef", "name"); n != "" {
				c.checkKeyRef(o, "Secret", n, "", get(ef, "secretRef", "optional") == true)
			}
		}
		for _, e := range listAt(ctr, "env") {
			vf := mapAt(e, "valueFrom")
			if r := mapAt(vf, "configMapKeyRef"); r != nil {
				c.checkKeyRef(o, "ConfigMap", str(r, "name"), str(r, "key"), r["optional"] == true)
			}
			if r := mapAt(vf, "secretKeyRef"); r != nil {
				c.checkKeyRef(o, "Secret", str(r, "name"), str(r, "key"), r["optional"] == true)
			}
			if r := mapAt(vf, "resourceFieldRef"); r != nil {
				res := str(r, "resource")
				kind, rname, _ := strings.Cut(res, ".")
				if get(ctr, "resources", kind, rname) == nil {
					c.errf(o, "%senv %s: resourceFieldRef %s is not set on the container", where, str(e, "name"), res)
				}
			}
		}
	}
}

func (c *checker) checkService(o obj) {
	sel := mapAt(o, "spec", "selector")
	workloads := c.checkSelects(o, sel)
	for _, p := range listAt(o, "spec", "ports") {
		target := get(p, "targetPort")
		if target == nil {
			target = get(p, "port")
		}
		for _, w := range workloads {
			found := false
			for _, ctr := range containers(w) {
				if _, ok := containerPort(ctr, target); ok {
					found = true
				}
			}
			if !found {
				c.errf(o, "port %v: targetPort %v is no containerPort of %s", get(p, "port"), target, id(w))
			}
		}
	}
}

func (c *checker) checkIngress(o obj) {
	for _, r := range listAt(o, "spec", "rules") {
		for _, p := range listAt(r, "http", "paths") {
			name := str(p, "backend", "service", "name")
			i := find(c.objs, "Service", name)
			if i < 0 {
				c.errf(o, "backend Service %q does not exist", name)
				continue
			}
			port := get(p, "backend", "service", "port", "number")
			if port == nil {
				port = get(p, "backend", "service", "port", "name")
			}
			ok := false
			for _, sp := range listAt(c.objs[i], "spec", "ports") {
				ok = ok || get(sp, "port") == port || get(sp, "name") == port
			}
			if !ok {
				c.errf(o, "backend port %v is not a port of Service %s", port, name)
			}
		}
	}
}

// checkNetworkPolicy checks that every pod selector selects some pod, and
// that an ingress rule's ports are ports the selected pods listen on.
func (c *checker) checkNetworkPolicy(o obj) {
	sel := mapAt(o, "spec", "podSelector", "matchLabels")
	var targets []obj
	if len(sel) > 0 {
		targets = c.checkSelects(o, sel)
	}
	for _, dir := range []struct{ rules, peers string }{{"ingress", "from"}, {"egress", "to"}} {
		for _, rule := range listAt(o, "spec", dir.rules) {
			for _, peer := range listAt(rule, dir.peers) {
				if get(peer, "namespaceSelector") != nil || get(peer, "ipBlock") != nil {
					continue
				}
				c.checkSelects(o, mapAt(peer, "podSelector", "matchLabels"))
			}
			if dir.rules != "ingress" {
				continue
			}
			for _, port := range listAt(rule, "ports") {
				for _, w := range targets {
					found := false
					for _, ctr := range containers(w) {
						_, ok := containerPort(ctr, get(port, "port"))
						found = found || ok
					}
					if !found {
						c.errf(o, "ingress port %v is not a containerPort of %s", get(port, "port"), id(w))
					}
				}
			}
		}
	}
}

// podEnv resolves a container's environment as the kubelet would (later
// sources win): envFrom in order, then env. resourceFieldRef values are
// left as "resourceFieldRef:<resource>".
func (c *checker) podEnv(ctr obj) map[string]string {
	env := map[string]string{}
	fromData := func(kind, name string) {
		i := find(c.objs, kind, name)
		if i < 0 {
			return
		}
		for k, v := range mapAt(c.objs[i], "data") {
			s, _ := v.(string)
			if kind == "Secret" {
				b, _ := base64.StdEncoding.DecodeString(s)
				s = string(b)
			}
			env[k] = s
		}
		for k, v := range mapAt(c.objs[i], "stringData") {
			env[k], _ = v.(string)
		}
	}
	for _, ef := range listAt(ctr, "envFrom") {
		if n := str(ef, "configMapRef", "name"); n != "" {
			fromData("ConfigMap", n)
		}
		if n := str(ef, "secretRef", "name"); n != "" {
			fromData("Secret", n)
		}
	}
	for _, e := range listAt(ctr, "env") {
		name := str(e, "name")
		vf := mapAt(e, "valueFrom")
		switch {
		case vf == nil:
			env[name] = str(e, "value")
		case mapAt(vf, "configMapKeyRef") != nil, mapAt(vf, "secretKeyRef") != nil:
			kind, r := "ConfigMap", mapAt(vf, "configMapKeyRef")
			if r == nil {
				kind, r = "Secret", mapAt(vf, "secretKeyRef")
			}
			if i := find(c.objs, kind, str(r, "name")); i >= 0 {
				s := str(c.objs[i], "data", str(r, "key"))
				if kind == "Secret" {
					b, _ := base64.StdEncoding.DecodeString(s)
					s = string(b)
				}
				env[name] = s
			}
		case mapAt(vf, "resourceFieldRef") != nil:
			env[name] = "resourceFieldRef:" + str(vf, "resourceFieldRef", "resource")
		default:
			env[name] = "fieldRef"
		}
	}
	return env
}

// checkBinary checks one of the suite's binaries against what it reads
// and serves.
func (c *checker) checkBinary(svc service, spec map[string]envVar) {
	i := find(c.objs, "Deployment", svc.name)
	if i < 0 {
		c.errs = append(c.errs, fmt.Errorf("Deployment/%s does not exist", svc.name))
		return
	}
	d := c.objs[i]
	if r, ok := get(d, "spec", "replicas").(float64); !ok || int(r) != svc.replicas {
		c.errf(d, "replicas %v, want %d (the original's)", get(d, "spec", "replicas"), svc.replicas)
	}
	ctrs := listAt(d, "spec", "template", "spec", "containers")
	if len(ctrs) != 1 {
		c.errf(d, "want one container, have %d", len(ctrs))
		return
	}
	ctr := ctrs[0].(map[string]any)
	if repo, _ := splitImage(str(ctr, "image")); repo != "mp3converter/"+svc.name {
		c.errf(d, "image %q, want mp3converter/%s:<tag>", str(ctr, "image"), svc.name)
	}
	if !hasSelector(c.objs, "PodDisruptionBudget", podLabels(d)) {
		c.errf(d, "no PodDisruptionBudget selects its pods")
	}
	env := c.podEnv(ctr)
	value := func(name string) (string, bool) {
		if v, ok := env[name]; ok {
			return v, true
		}
		v, ok := spec[name]
		return v.def, ok && v.hasDef
	}

	// Every variable is one the binary reads, of the right type, and every
	// required one is provided.
	for name, v := range env {
		if goRuntimeVars[name] {
			continue
		}
		ev, ok := spec[name]
		if !ok {
			c.errf(d, "env %s is not read by %s (typo?)", name, svc.name)
			continue
		}
		if err := checkValue(ev.typ, v); err != nil {
			c.errf(d, "env %s=%q is not a valid %s: %v", name, v, ev.typ, err)
		}
	}
	for name, v := range spec {
		got, ok := env[name]
		switch {
		case v.required && !ok:
			c.errf(d, "required env %s is not provided", name)
		case v.notEmpty && got == "":
			c.errf(d, "env %s must not be empty", name)
		}
	}

	// The port the binary serves is the container's, the Service's and the
	// probes'; the probes are /healthz and /readyz.
	portStr, _ := value("PORT")
	port, err := strconv.Atoi(portStr)
	if err != nil {
		c.errf(d, "PORT %q: %v", portStr, err)
		return
	}
	if _, ok := containerPort(ctr, float64(port)); !ok {
		c.errf(d, "%s serves PORT %d, which is no containerPort", svc.name, port)
	}
	// Probes go to the ops port where the binary has one (OPS_PORT, the
	// gateway's: readiness and metrics off the public port).
	probePort := port
	if _, hasOps := spec["OPS_PORT"]; hasOps {
		opsStr, _ := value("OPS_PORT")
		if probePort, err = strconv.Atoi(opsStr); err != nil {
			c.errf(d, "OPS_PORT %q: %v", opsStr, err)
			return
		}
		if _, ok := containerPort(ctr, float64(probePort)); !ok {
			c.errf(d, "%s serves OPS_PORT %d, which is no containerPort", svc.name, probePort)
		}
		if probePort == port {
			c.errf(d, "%s serves its ops endpoints on its public PORT %d", svc.name, port)
		}
		if a := str(mapAt(d, "spec", "template", "metadata"), "annotations", "prometheus.io/port"); a != "" && a != opsStr {
			c.errf(d, "prometheus.io/port %s is not OPS_PORT %s", a, opsStr)
		}
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		h := mapAt(ctr, probe, "httpGet")
		if h == nil {
			c.errf(d, "%s is not an httpGet", probe)
			continue
		}
		if str(h, "path") != path {
			c.errf(d, "%s path %q, want %s", probe, str(h, "path"), path)
		}
		if p, _ := containerPort(ctr, h["port"]); p != probePort {
			c.errf(d, "%s port %v is not %d", probe, h["port"], probePort)
		}
	}
	if si := find(c.objs, "Service", svc.name); si < 0 {
		c.errf(d, "no Service %s", svc.name)
	} else {
		ok := false
		for _, sp := range listAt(c.objs[si], "spec", "ports") {
			t := get(sp, "targetPort")
			if t == nil {
				t = get(sp, "port")
			}
			p, _ := containerPort(ctr, t)
			ok = ok || p == port
		}
		if !ok {
			c.errf(d, "Service %s does not target PORT %d", svc.name, port)
		}
	}

	// Memory: GOMEMLIMIT from the limit, at most the limit.
	limit, err := parseQuantity(str(ctr, "resources", "limits", "memory"))
	switch gml := env["GOMEMLIMIT"]; {
	case err != nil:
		c.errf(d, "memory limit: %v", err)
	case gml == "":
		c.errf(d, "GOMEMLIMIT is not set")
	case gml == "resourceFieldRef:limits.memory":
	case strings.HasPrefix(gml, "resourceFieldRef:"):
		c.errf(d, "GOMEMLIMIT from %s, want limits.memory", gml)
	default:
		if b, err := parseGoMemLimit(gml); err != nil {
			c.errf(d, "GOMEMLIMIT %q: %v", gml, err)
		} else if b > limit {
			c.errf(d, "GOMEMLIMIT %s is above the memory limit", gml)
		}
	}

	// Shutdown: the grace period outlasts preStop plus SHUTDOWN_TIMEOUT.
	st, _ := value("SHUTDOWN_TIMEOUT")
	shutdown, err := time.ParseDuration(st)
	if err != nil {
		c.errf(d, "SHUTDOWN_TIMEOUT %q: %v", st, err)
	}
	grace := 30.0 // Kubernetes' default
	if g, ok := get(d, "spec", "template", "spec", "terminationGracePeriodSeconds").(float64); ok {
		grace = g
	}
	preStop, _ := get(ctr, "lifecycle", "preStop", "sleep", "seconds").(float64)
	if need := shutdown.Seconds() + preStop; grace <= need {
		c.errf(d, "terminationGracePeriodSeconds %v is not above preStop %vs + SHUTDOWN_TIMEOUT %s", grace, preStop, shutdown)
	}

	// Writable places on a read-only root: /tmp, and the converter's scratch.
	dirs := []string{"/tmp"}
	if sd, ok := env["SCRATCH_DIR"]; ok && sd != "" {
		dirs = append(dirs, sd)
	} else if svc.name == "converter" {
		c.errf(d, "SCRATCH_DIR is not set")
	}
	for _, dir := range dirs {
		if !mountedEmptyDir(d, ctr, dir) {
			c.errf(d, "%s is not an emptyDir mount", dir)
		}
	}

	// The converter keeps its temporary videos within SCRATCH_LIMIT_BYTES:
	// the scratch emptyDir's sizeLimit (which the file system's free space
	// does not show), or less.
	if _, ok := spec["SCRATCH_LIMIT_BYTES"]; ok {
		lim, _ := value("SCRATCH_LIMIT_BYTES")
		n, nerr := strconv.ParseInt(lim, 10, 64)
		size := emptyDirSizeLimit(d, ctr, env["SCRATCH_DIR"])
		switch sl, err := parseQuantity(size); {
		case nerr != nil || size == "":
			// Not a number: reported above. No sizeLimit: nothing to match.
		case err != nil:
			c.errf(d, "scratch emptyDir sizeLimit: %v", err)
		case n <= 0:
			c.errf(d, "SCRATCH_LIMIT_BYTES is not set: the scratch emptyDir's sizeLimit %s is not known to the converter", size)
		case float64(n) > sl:
			c.errf(d, "SCRATCH_LIMIT_BYTES %d is above the scratch emptyDir's sizeLimit %s", n, size)
		}
	}
}

// emptyDirSizeLimit is the sizeLimit of the emptyDir mounted at path, or "".
func emptyDirSizeLimit(d, ctr obj, path string) string {
	for _, m := range listAt(ctr, "volumeMounts") {
		if filepath.Clean(str(m, "mountPath")) != filepath.Clean(path) {
			continue
		}
		for _, v := range listAt(d, "spec", "template", "spec", "volumes") {
			if str(v, "name") == str(m, "name") {
				return str(v, "emptyDir", "sizeLimit")
			}
		}
	}
	return ""
}

func hasSelector(objs []obj, kind string, labels obj) bool {
	for _, o := range objs {
		if str(o, "kind") == kind && matches(mapAt(o, "spec", "selector", "matchLabels"), labels) {
			return true
		}
	}
	return false
}

func mountedEmptyDir(d, ctr obj, path string) bool {
	for _, m := range listAt(ctr, "volumeMounts") {
		if filepath.Clean(str(m, "mountPath")) != filepath.Clean(path) {
			continue
		}
		for _, v := range listAt(d, "spec", "template", "spec", "volumes") {
			if str(v, "name") == str(m, "name") && get(v, "emptyDir") != nil {
				return true
			}
		}
	}
	return false
}

var quantity = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$`)

// parseQuantity parses a Kubernetes memory quantity into bytes.
func parseQuantity(s string) (float64, error) {
	m := quantity.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("quantity %q not understood", s)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	mult := map[string]float64{"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
		"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}[m[2]]
	return n * mult, nil
}

var goMemLimit = regexp.MustCompile(`^([0-9]+)(B|KiB|MiB|GiB|TiB)?$`)

// parseGoMemLimit parses GOMEMLIMIT as the Go runtime does.
func parseGoMemLimit(s string) (float64, error) {
	m := goMemLimit.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("not a GOMEMLIMIT (a number with B, KiB, MiB, GiB or TiB)")
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	return n * map[string]float64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[m[2]], nil
}

func loadSpecs(t testing.TB) map[string]map[string]envVar {
	t.Helper()
	specs := map[string]map[string]envVar{}
	for _, svc := range services {
		spec := envSpec(svc.config)
		specs[svc.name] = spec
	}
	return specs
}

// TestManifests checks the base and every component set.
func TestManifests(t *testing.T) {
	specs := loadSpecs(t)
	for _, comps := range componentSets {
		t.Run(setName(comps), func(t *testing.T) {
			objs := renderSet(t, comps)
			for _, err := range checkManifests(objs, specs) {
				t.Error(err)
			}
		})
	}
}

// TestManifestsBaseContents checks what the base must contain.
func TestManifestsBaseContents(t *testing.T) {
	objs := renderSet(t, nil)
	want := []string{"StatefulSet/mysql", "StatefulSet/mongodb", "StatefulSet/rabbitmq",
		"Service/mysql", "Service/mongodb", "Service/rabbitmq", "ConfigMap/mysql-init"}
	for _, svc := range services {
		want = append(want, "Deployment/"+svc.name, "Service/"+svc.name, "PodDisruptionBudget/"+svc.name,
			"ConfigMap/"+svc.name+"-configmap", "Secret/"+svc.name+"-secret")
	}
	for _, w := range want {
		kind, name, _ := strings.Cut(w, "/")
		if find(objs, kind, name) < 0 {
			t.Errorf("%s is missing", w)
		}
	}
	for _, name := range []string{"mysql", "mongodb", "rabbitmq"} {
		s := objs[find(objs, "StatefulSet", name)]
		if len(listAt(s, "spec", "volumeClaimTemplates")) == 0 {
			t.Errorf("StatefulSet/%s has no volumeClaimTemplates", name)
		}
	}
	if init := str(objs[find(objs, "ConfigMap", "mysql-init")], "data", "init.sql"); !regexp.MustCompile(
		`(?is)CREATE TABLE.*user.*id .*email .*UNIQUE.*password`).MatchString(init) {
		t.Errorf("mysql-init has not the original's user table:\n%s", init)
	}
	rabbit := objs[find(objs, "StatefulSet", "rabbitmq")]
	if _, ok := containerPort(listAt(rabbit, "spec", "template", "spec", "containers")[0].(map[string]any), 15672.0); !ok {
		t.Error("rabbitmq has no management port 15672")
	}
}

// TestManifestsComponents checks what each component must do.
func TestManifestsComponents(t *testing.T) {
	objs := renderSet(t, []string{"host-databases"})
	for _, gone := range []string{"StatefulSet/mysql", "StatefulSet/mongodb"} {
		kind, name, _ := strings.Cut(gone, "/")
		if find(objs, kind, name) >= 0 {
			t.Errorf("host-databases keeps %s", gone)
		}
	}
	if find(objs, "StatefulSet", "rabbitmq") < 0 {
		t.Error("host-databases drops rabbitmq")
	}
	for cm, key := range map[string]string{"auth-configmap": "MYSQL_HOST", "gateway-configmap": "MONGODB_URI",
		"converter-configmap": "MONGODB_URI", "notification-configmap": "MONGODB_URI"} {
		if v := str(objs[find(objs, "ConfigMap", cm)], "data", key); !strings.Contains(v, "host.minikube.internal") {
			t.Errorf("host-databases: %s %s = %q", cm, key, v)
		}
	}

	objs = renderSet(t, []string{"ingress"})
	hosts := map[string]obj{}
	for _, o := range objs {
		if str(o, "kind") == "Ingress" {
			for _, r := range listAt(o, "spec", "rules") {
				hosts[str(r, "host")] = o
			}
		}
	}
	if g := hosts["mp3converter.com"]; g == nil {
		t.Error("no Ingress for mp3converter.com")
	} else if str(g, "metadata", "annotations", "nginx.ingress.kubernetes.io/proxy-body-size") != "0" ||
		str(g, "metadata", "annotations", "nginx.ingress.kubernetes.io/proxy-read-timeout") == "" {
		t.Error("the gateway Ingress lacks the body-size and timeout annotations")
	}
	if hosts["rabbitmq-manager.com"] == nil {
		t.Error("no Ingress for rabbitmq-manager.com")
	}

	objs = renderSet(t, []string{"keda"})
	so := objs[find(objs, "ScaledObject", "converter")]
	if tr := listAt(so, "spec", "triggers"); len(tr) != 1 || str(tr[0], "type") != "rabbitmq" || str(tr[0], "metadata", "queueName") != "video" {
		t.Errorf("the converter's ScaledObject does not scale on queue video: %v", tr)
	}
	objs = renderSet(t, []string{"hpa"})
	if find(objs, "HorizontalPodAutoscaler", "gateway") < 0 {
		t.Error("no HPA for the gateway")
	}

	objs = renderSet(t, []string{"network-policies"})
	np := objs[find(objs, "NetworkPolicy", "default-deny-all")]
	if len(mapAt(np, "spec", "podSelector")) != 0 || len(listAt(np, "spec", "policyTypes")) != 2 ||
		get(np, "spec", "ingress") != nil || get(np, "spec", "egress") != nil {
		t.Error("default-deny-all does not deny everything")
	}
	// Every allowed pod-to-pod flow, and nothing else.
	got := map[string]bool{}
	for _, o := range objs {
		if str(o, "kind") != "NetworkPolicy" {
			continue
		}
		self := str(o, "spec", "podSelector", "matchLabels", "app")
		for _, dir := range []string{"ingress", "egress"} {
			for _, rule := range listAt(o, "spec", dir) {
				for _, peer := range listAt(rule, map[string]string{"ingress": "from", "egress": "to"}[dir]) {
					other := str(peer, "podSelector", "matchLabels", "app")
					if other == "" {
						other = "ns:" + str(peer, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name") + str(peer, "ipBlock", "cidr")
					}
					for _, p := range listAt(rule, "ports") {
						from, to := other, self
						if dir == "egress" {
							from, to = self, other
						}
						if from == "" {
							from = "*"
						}
						got[fmt.Sprintf("%s %s %s>%s %v", dir, str(o, "metadata", "name"), from, to, get(p, "port"))] = true
					}
				}
			}
		}
	}
	want := []string{
		"ingress gateway ns:ingress-nginx>gateway 8080",
		"egress gateway gateway>auth 5000", "ingress auth gateway>auth 5000",
		"egress auth auth>mysql 3306", "ingress mysql auth>mysql 3306",
		"egress gateway gateway>mongodb 27017", "egress converter converter>mongodb 27017", "egress notification notification>mongodb 27017",
		"ingress mongodb gateway>mongodb 27017", "ingress mongodb converter>mongodb 27017", "ingress mongodb notification>mongodb 27017",
		"egress gateway gateway>rabbitmq 5672", "egress converter converter>rabbitmq 5672", "egress notification notification>rabbitmq 5672",
		"ingress rabbitmq gateway>rabbitmq 5672", "ingress rabbitmq converter>rabbitmq 5672", "ingress rabbitmq notification>rabbitmq 5672",
		"ingress rabbitmq ns:ingress-nginx>rabbitmq 15672",
		"egress notification notification>ns:0.0.0.0/0 587", "egress notification notification>ns:0.0.0.0/0 465",
		"egress allow-dns-egress *>ns:kube-system 53",
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("network policies do not allow %q", w)
		}
		delete(got, w)
	}
	for g := range got {
		t.Errorf("network policies allow a flow the suite does not use: %q", g)
	}
}

// TestManifestChecksCatchBreakage proves that the checks above fail on
// broken copies of the rendered base.
func TestManifestChecksCatchBreakage(t *testing.T) {
	specs := loadSpecs(t)
	base := renderSet(t, nil)
	at := func(objs []obj, kind, name string) obj {
		i := find(objs, kind, name)
		if i < 0 {
			t.Fatalf("%s/%s not rendered", kind, name)
		}
		return objs[i]
	}
	ctr := func(objs []obj, kind, name string) obj {
		return listAt(at(objs, kind, name), "spec", "template", "spec", "containers")[0].(map[string]any)
	}
	cases := []struct {
		name   string
		mutate func([]obj)
		want   string
	}{
		{"selector/labels mismatch", func(o []obj) {
			mapAt(at(o, "Deployment", "auth"), "spec", "template", "metadata", "labels")["app"] = "authx"
		}, "Deployment/auth: selector.matchLabels"},
		{"service selects nothing", func(o []obj) {
			mapAt(at(o, "Service", "gateway"), "spec", "selector")["app"] = "gw"
		}, "Service/gateway: selector"},
		{"missing secret key JWT_SECRET", func(o []obj) {
			delete(mapAt(at(o, "Secret", "auth-secret"), "data"), "JWT_SECRET")
		}, "required env JWT_SECRET"},
		{"missing secretKeyRef key", func(o []obj) {
			delete(mapAt(at(o, "Secret", "mysql-secret"), "data"), "MYSQL_ROOT_PASSWORD")
		}, `has no key "MYSQL_ROOT_PASSWORD"`},
		{"missing ConfigMap", func(o []obj) {
			at(o, "ConfigMap", "gateway-configmap")["metadata"].(map[string]any)["name"] = "gw-configmap"
		}, `ConfigMap "gateway-configmap" does not exist`},
		{"unknown env var", func(o []obj) {
			mapAt(at(o, "ConfigMap", "auth-configmap"), "data")["MYSQL_HOSTNAME"] = "mysql"
		}, "env MYSQL_HOSTNAME is not read"},
		{"bad duration", func(o []obj) {
			mapAt(at(o, "ConfigMap", "converter-configmap"), "data")["SHUTDOWN_TIMEOUT"] = "soon"
		}, "SHUTDOWN_TIMEOUT"},
		{"grace below shutdown", func(o []obj) {
			mapAt(at(o, "Deployment", "converter"), "spec", "template", "spec")["terminationGracePeriodSeconds"] = 60.0
		}, "terminationGracePeriodSeconds 60"},
		{"service targetPort", func(o []obj) {
			listAt(at(o, "Service", "converter"), "spec", "ports")[0].(map[string]any)["targetPort"] = 9090.0
		}, "targetPort 9090"},
		{"wrong containerPort", func(o []obj) {
			listAt(ctr(o, "Deployment", "notification"), "ports")[0].(map[string]any)["containerPort"] = 8080.0
		}, "serves PORT 8082, which is no containerPort"},
		{"probe path", func(o []obj) {
			mapAt(ctr(o, "Deployment", "gateway"), "readinessProbe", "httpGet")["path"] = "/ready"
		}, "readinessProbe path"},
		{"writable root", func(o []obj) {
			mapAt(ctr(o, "StatefulSet", "mongodb"), "securityContext")["readOnlyRootFilesystem"] = false
		}, "readOnlyRootFilesystem"},
		{"capabilities kept", func(o []obj) {
			delete(mapAt(ctr(o, "Deployment", "auth"), "securityContext"), "capabilities")
		}, "capabilities"},
		{"no limits", func(o []obj) {
			delete(mapAt(ctr(o, "Deployment", "gateway"), "resources"), "limits")
		}, "resources.limits.memory"},
		{"latest image", func(o []obj) {
			ctr(o, "Deployment", "auth")["image"] = "mp3converter/auth:latest"
		}, "no explicit tag"},
		{"untagged image", func(o []obj) {
			ctr(o, "StatefulSet", "mysql")["image"] = "mysql"
		}, "no explicit tag"},
		{"no GOMEMLIMIT", func(o []obj) {
			delete(ctr(o, "Deployment", "auth"), "env")
		}, "GOMEMLIMIT is not set"},
		{"scratch limit above the emptyDir", func(o []obj) {
			mapAt(at(o, "ConfigMap", "converter-configmap"), "data")["SCRATCH_LIMIT_BYTES"] = "10737418240"
		}, "SCRATCH_LIMIT_BYTES 10737418240 is above the scratch emptyDir's sizeLimit 5Gi"},
		{"scratch limit not set", func(o []obj) {
			delete(mapAt(at(o, "ConfigMap", "converter-configmap"), "data"), "SCRATCH_LIMIT_BYTES")
		}, "SCRATCH_LIMIT_BYTES is not set"},
		{"no scratch emptyDir", func(o []obj) {
			c := ctr(o, "Deployment", "converter")
			c["volumeMounts"] = c["volumeMounts"].([]any)[:1]
		}, "/scratch is not an emptyDir"},
		{"wrong replicas", func(o []obj) {
			mapAt(at(o, "Deployment", "converter"), "spec")["replicas"] = 1.0
		}, "replicas 1"},
		{"root user", func(o []obj) {
			mapAt(at(o, "Deployment", "notification"), "spec", "template", "spec", "securityContext")["runAsNonRoot"] = false
		}, "runAsNonRoot"},
		{"JOB_TIMEOUT above the broker's consumer_timeout", func(o []obj) {
			mapAt(at(o, "ConfigMap", "converter-configmap"), "data")["JOB_TIMEOUT"] = "1h"
		}, "is not below RabbitMQ's consumer_timeout 30m0s"},
		{"default JOB_TIMEOUT above a lower consumer_timeout", func(o []obj) {
			delete(mapAt(at(o, "ConfigMap", "converter-configmap"), "data"), "JOB_TIMEOUT")
			mapAt(at(o, "ConfigMap", "rabbitmq-config"), "data")["90-mp3converter.conf"] = "consumer_timeout = 1200000\n"
		}, "JOB_TIMEOUT 25m0s (default) + MAX_RETRY_BACKOFF"},
		{"no consumer_timeout in RabbitMQ's configuration", func(o []obj) {
			mapAt(at(o, "ConfigMap", "rabbitmq-config"), "data")["90-mp3converter.conf"] = "# consumer_timeout = 1800000\n"
		}, "states no consumer_timeout"},
		{"RabbitMQ's configuration not mounted", func(o []obj) {
			c := ctr(o, "StatefulSet", "rabbitmq")
			c["volumeMounts"] = c["volumeMounts"].([]any)[:2]
		}, "states no consumer_timeout"},
		{"BROKER_CONSUMER_TIMEOUT not the broker's", func(o []obj) {
			mapAt(at(o, "ConfigMap", "converter-configmap"), "data")["BROKER_CONSUMER_TIMEOUT"] = "1h"
		}, "BROKER_CONSUMER_TIMEOUT 1h0m0s is not RabbitMQ's consumer_timeout 30m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := deepCopy(base)
			tc.mutate(objs)
			errs := checkManifests(objs, specs)
			for _, err := range errs {
				if strings.Contains(err.Error(), tc.want) {
					return
				}
			}
			t.Errorf("no error mentions %q; got %v", tc.want, errs)
		})
	}
}

// TestConfigsLoadFromManifests loads each Config (with the binaries' own
// loader and validation) from the environment the manifests give it.
func TestConfigsLoadFromManifests(t *testing.T) {
	objs := renderSet(t, nil)
	c := &checker{objs: objs}
	envOf := func(name string) map[string]string {
		d := objs[find(objs, "Deployment", name)]
		return c.podEnv(listAt(d, "spec", "template", "spec", "containers")[0].(map[string]any))
	}
	if _, err := config.LoadFrom[auth.Config](envOf("auth")); err != nil {
		t.Errorf("auth: %v", err)
	}
	if _, err := config.LoadFrom[gateway.Config](envOf("gateway")); err != nil {
		t.Errorf("gateway: %v", err)
	}
	n, err := config.LoadFrom[notification.Config](envOf("notification"))
	if err != nil {
		t.Errorf("notification: %v", err)
	} else if err := n.Validate(); err != nil {
		t.Errorf("notification: %v", err)
	}
	// Without the secret's JWT_SECRET, auth refuses to start.
	env := envOf("auth")
	delete(env, "JWT_SECRET")
	if _, err := config.LoadFrom[auth.Config](env); err == nil || !strings.Contains(err.Error(), "JWT_SECRET") {
		t.Errorf("auth without JWT_SECRET: err = %v", err)
	}
}

// TestProbePathsServed checks that the handlers the binaries serve on PORT
// answer the probes' paths: auth's and the gateway's routers, and the ops
// handler that the converter and notification serve.
func TestProbePathsServed(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	handlers := map[string]http.Handler{
		"auth": auth.NewServer(nil, nil, httpx.NewOps(httpx.NewRegistry()), log, auth.ServerOptions{
			RequestTimeout: time.Second, LoginRate: 1, LoginBurst: 1}),
		// The gateway's probes go to its ops port (OPS_PORT), served by
		// httpx.OpsHandler as the converter's and the notification's are.
		"converter, notification, gateway ops": httpx.OpsHandler(httpx.NewOps(httpx.NewRegistry()), log),
	}
	for name, h := range handlers {
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != http.StatusOK {
				t.Errorf("%s: GET %s = %d, want 200", name, path, rec.Code)
			}
		}
	}
}

// TestServicesShareMongoDB checks that the services that keep data in
// MongoDB (the gateway, the converter and, for the job records and the MP3s'
// owners, the notification service) all reach the same server and databases,
// in the base and in every component set, defaults included.
func TestServicesShareMongoDB(t *testing.T) {
	specs := loadSpecs(t)
	vars := []string{"MONGODB_URI", "MONGODB_VIDEOS_DB", "MONGODB_MP3S_DB"}
	for _, comps := range componentSets {
		name := setName(comps)
		t.Run(name, func(t *testing.T) {
			objs := renderSet(t, comps)
			c := &checker{objs: objs}
			effective := func(svc string) map[string]string {
				d := find(objs, "Deployment", svc)
				if d < 0 {
					t.Fatalf("Deployment/%s not rendered", svc)
				}
				env := c.podEnv(listAt(objs[d], "spec", "template", "spec", "containers")[0].(map[string]any))
				out := map[string]string{}
				for _, v := range vars {
					spec, ok := specs[svc][v]
					if !ok {
						t.Errorf("%s does not read %s", svc, v)
						continue
					}
					val, set := env[v]
					if !set {
						val = spec.def
					}
					out[v] = val
				}
				return out
			}
			want := effective("gateway")
			for _, svc := range []string{"converter", "notification"} {
				got := effective(svc)
				for _, v := range vars {
					if got[v] == want[v] {
						continue
					}
					t.Errorf("%s %s = %q, gateway's = %q", svc, v, got[v], want[v])
				}
			}
		})
	}
}
