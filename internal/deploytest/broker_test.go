package deploytest

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"mp3converter/internal/config"
	"mp3converter/internal/converter"
)

// rabbitConfDir is where the RabbitMQ image reads its configuration files
// (conf.d/*.conf, in name order, later ones winning; rabbitmq.conf).
const rabbitConfDir = "/etc/rabbitmq"

var consumerTimeoutLine = regexp.MustCompile(`^\s*consumer_timeout\s*=\s*(\S+)\s*$`)

// rabbitConsumerTimeout is the consumer_timeout that the RabbitMQ
// StatefulSet's configuration files (ConfigMaps mounted under
// /etc/rabbitmq) state, the file that does so and whether one does.
func (c *checker) rabbitConsumerTimeout(rabbit obj) (time.Duration, string, bool, error) {
	ctrs := containers(rabbit)
	if len(ctrs) == 0 {
		return 0, "", false, nil
	}
	volumes := map[string]obj{}
	for _, v := range listAt(podSpec(rabbit), "volumes") {
		volumes[str(v, "name")] = v.(map[string]any)
	}
	// The files under /etc/rabbitmq that come from ConfigMaps, by path.
	files := map[string]string{}
	for _, m := range listAt(ctrs[0], "volumeMounts") {
		mp := path.Clean(str(m, "mountPath"))
		if mp != rabbitConfDir && !strings.HasPrefix(mp, rabbitConfDir+"/") {
			continue
		}
		v := volumes[str(m, "name")]
		i := find(c.objs, "ConfigMap", str(v, "configMap", "name"))
		if v == nil || i < 0 {
			continue
		}
		data := mapAt(c.objs[i], "data")
		// The volume's files: its items (key → path), or every key.
		vfiles := map[string]string{}
		if items := listAt(v, "configMap", "items"); len(items) > 0 {
			for _, it := range items {
				s, _ := data[str(it, "key")].(string)
				vfiles[str(it, "path")] = s
			}
		} else {
			for k, d := range data {
				vfiles[k], _ = d.(string)
			}
		}
		if sp := str(m, "subPath"); sp != "" {
			if d, ok := vfiles[sp]; ok {
				files[mp] = d
			}
			continue
		}
		for p, d := range vfiles {
			files[path.Join(mp, p)] = d
		}
	}
	// conf.d in name order, then rabbitmq.conf (RABBITMQ_CONFIG_FILE):
	// the last statement wins.
	var names []string
	for p := range files {
		if path.Ext(p) == ".conf" {
			names = append(names, p)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		ci, cj := path.Base(path.Dir(names[i])) == "conf.d", path.Base(path.Dir(names[j])) == "conf.d"
		if ci != cj {
			return ci
		}
		return names[i] < names[j]
	})
	var (
		timeout time.Duration
		where   string
		found   bool
	)
	for _, p := range names {
		for _, line := range strings.Split(files[p], "\n") {
			m := consumerTimeoutLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			ms, err := strconv.ParseInt(m[1], 10, 64)
			if err != nil || ms <= 0 {
				return 0, p, true, fmt.Errorf("%s: consumer_timeout %q is not a number of milliseconds", p, m[1])
			}
			timeout, where, found = time.Duration(ms)*time.Millisecond, p, true
		}
	}
	return timeout, where, found, nil
}

// checkConsumerTimeout checks that a delivery of the converter's queue
// never stays unacked as long as RabbitMQ's consumer_timeout (after which
// the broker takes the message back from a conversion still running and
// hands it to another converter): the converter's LongestUnacked
// (JOB_TIMEOUT, from its ConfigMap or the default, + MAX_RETRY_BACKOFF +
// 2m) is below the consumer_timeout stated in RabbitMQ's configuration,
// and the converter's BROKER_CONSUMER_TIMEOUT (which it checks at start)
// is that value.
func (c *checker) checkConsumerTimeout() {
	ri, di := find(c.objs, "StatefulSet", "rabbitmq"), find(c.objs, "Deployment", "converter")
	if ri < 0 || di < 0 {
		return // no broker in this set, or no converter: reported elsewhere
	}
	rabbit, d := c.objs[ri], c.objs[di]
	timeout, where, found, err := c.rabbitConsumerTimeout(rabbit)
	switch {
	case err != nil:
		c.errf(rabbit, "%v", err)
		return
	case !found:
		c.errf(rabbit, "RabbitMQ's configuration states no consumer_timeout (a .conf file from a ConfigMap mounted under %s)", rabbitConfDir)
		return
	}
	ctrs := containers(d)
	if len(ctrs) == 0 {
		return
	}
	env := c.podEnv(ctrs[0])
	cfg, err := config.LoadFrom[converter.Config](env)
	if err != nil {
		c.errf(d, "converter configuration: %v", err)
		return
	}
	how := func(name string) string {
		if _, ok := env[name]; ok {
			return ""
		}
		return " (default)"
	}
	if longest := cfg.LongestUnacked(); longest >= timeout {
		c.errf(d, "JOB_TIMEOUT %s%s + MAX_RETRY_BACKOFF %s%s + 2m = %s is not below RabbitMQ's consumer_timeout %s (%s): "+
			"the broker would take a long conversion's message back and hand it to another converter",
			cfg.JobTimeout, how("JOB_TIMEOUT"), cfg.MaxRetryBackoff, how("MAX_RETRY_BACKOFF"), longest, timeout, where)
	}
	if cfg.BrokerConsumerTimeout != timeout {
		c.errf(d, "BROKER_CONSUMER_TIMEOUT %s%s is not RabbitMQ's consumer_timeout %s (%s)",
			cfg.BrokerConsumerTimeout, how("BROKER_CONSUMER_TIMEOUT"), timeout, where)
	}
}

// TestConverterConfigLoadsFromManifests loads and validates the converter's
// Config (its start-up check of JOB_TIMEOUT against BROKER_CONSUMER_TIMEOUT
// included) from the environment the manifests give it; SCRATCH_DIR, an
// emptyDir in the pod, is a temporary directory here.
func TestConverterConfigLoadsFromManifests(t *testing.T) {
	objs := renderSet(t, nil)
	c := &checker{objs: objs}
	env := c.podEnv(containers(objs[find(objs, "Deployment", "converter")])[0])
	env["SCRATCH_DIR"] = t.TempDir()
	cfg, err := config.LoadFrom[converter.Config](env)
	if err == nil {
		_, err = cfg.Options()
	}
	if err != nil {
		t.Errorf("converter: %v", err)
	}
	timeout, where, found, err := c.rabbitConsumerTimeout(objs[find(objs, "StatefulSet", "rabbitmq")])
	if err != nil || !found || timeout != 30*time.Minute {
		t.Errorf("RabbitMQ's consumer_timeout: %s in %s (found %v, %v), want the stated 30m", timeout, where, found, err)
	}
}
