package httpx

import (
	"net/http/httptest"
	"testing"
)

func TestClientAddr(t *testing.T) {
	private, _ := ParseProxies("private")
	none, _ := ParseProxies("none")
	ingress, _ := ParseProxies("10.1.0.0/16, 127.0.0.1")
	for _, tc := range []struct {
		name    string
		proxies Proxies
		remote  string
		xff     []string
		want    string
	}{
		{"direct client, no header", Proxies{}, "203.0.113.9:4000", nil, "203.0.113.9"},
		{"direct client's header is ignored", Proxies{}, "203.0.113.9:4000", []string{"1.2.3.4"}, "203.0.113.9"},
		{"gateway names the client", Proxies{}, "10.0.0.5:4000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"an appending proxy: the client's own entry is ignored", private,
			"10.0.0.5:4000", []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9"},
		{"a chain of proxies is skipped", private,
			"127.0.0.1:4000", []string{"1.2.3.4, 203.0.113.9, 10.0.0.7", "192.168.1.1"}, "203.0.113.9"},
		{"only proxies: the farthest one", private, "10.0.0.5:4000", []string{"10.0.0.8, 10.0.0.7"}, "10.0.0.8"},
		{"garbage stops the walk", private, "10.0.0.5:4000", []string{"203.0.113.9, not-an-ip, 10.0.0.7"}, "10.0.0.7"},
		{"entries with ports", private, "10.0.0.5:4000", []string{"[2001:db8::1]:443, 198.51.100.2:80"}, "198.51.100.2"},
		{"none trusts no peer", none, "10.0.0.5:4000", []string{"203.0.113.9"}, "10.0.0.5"},
		{"narrowed list: an untrusted private peer", ingress, "10.2.0.5:4000", []string{"203.0.113.9"}, "10.2.0.5"},
		{"narrowed list: the ingress", ingress, "10.1.3.4:4000", []string{"203.0.113.9"}, "203.0.113.9"},
		{"IPv4-mapped peer", Proxies{}, "[::ffff:10.0.0.5]:4000", []string{"203.0.113.9"}, "203.0.113.9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/login", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := tc.proxies.ClientAddr(r); got != tc.want {
				t.Errorf("ClientAddr = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseProxies(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "nonsense", "none, 10.0.0.1", "1.2.3"} {
		if _, err := ParseProxies(bad); err == nil {
			t.Errorf("ParseProxies(%q) = nil error", bad)
		}
	}
	for _, good := range []string{"", "private", "none", "10.0.0.0/8, 2001:db8::/32", "private,192.0.2.1"} {
		if _, err := ParseProxies(good); err != nil {
			t.Errorf("ParseProxies(%q) = %v", good, err)
		}
	}
}
