package httpx

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxies are the peers trusted to name the client in X-Forwarded-For:
// the gateway in front of auth, an ingress controller in front of the
// gateway. The zero value trusts loopback and private addresses.
type Proxies struct {
	nets []netip.Prefix
	set  bool
}

// privateNets are the loopback and private ranges, "private" in
// ParseProxies.
var privateNets = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("fc00::/7"),
}

// ParseProxies reads a comma-separated list of CIDRs or addresses; the word
// "private" stands for the loopback and private ranges (also the meaning of
// an empty list) and "none" trusts no peer.
func ParseProxies(s string) (Proxies, error) {
	p := Proxies{set: true}
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); {
		case f == "" && strings.TrimSpace(s) == "", f == "private":
			p.nets = append(p.nets, privateNets...)
		case f == "":
		case f == "none":
			if strings.TrimSpace(s) != "none" {
				return Proxies{}, fmt.Errorf("trusted proxies %q: none excludes other entries", s)
			}
		case strings.Contains(f, "/"):
			n, err := netip.ParsePrefix(f)
			if err != nil {
				return Proxies{}, fmt.Errorf("trusted proxies: %w", err)
			}
			p.nets = append(p.nets, n.Masked())
		default:
			a, err := netip.ParseAddr(f)
			if err != nil {
				return Proxies{}, fmt.Errorf("trusted proxies: %w", err)
			}
			p.nets = append(p.nets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
		}
	}
	return p, nil
}

// UnmarshalText lets Proxies be read from an environment variable.
func (p *Proxies) UnmarshalText(b []byte) error {
	v, err := ParseProxies(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

func (p Proxies) trusts(a netip.Addr) bool {
	nets := p.nets
	if !p.set {
		nets = privateNets
	}
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// Contains reports whether addr (an IP address as ClientAddr returns it) is
// one of the peers. Unlike trust, an empty set contains nothing.
func (p Proxies) Contains(addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil || !p.set {
		return false
	}
	return p.trusts(a.Unmap())
}

// ClientAddr is the address a request came from. From a trusted peer,
// X-Forwarded-For is read from the right (each proxy appends the address
// it saw) and the first address that is not a trusted proxy is the client;
// the entries to its left were written by the client and are ignored, so
// a client cannot pick its own rate-limit bucket. From any other peer the
// header is ignored.
func (p Proxies) ClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	client := peer.Unmap()
	if !p.trusts(client) {
		return client.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			break // garbage: keep the last address a trusted proxy gave
		}
		client = a
		if !p.trusts(a) {
			break
		}
	}
	return client.String()
}

// parseHop reads one X-Forwarded-For entry: an address, with or without a
// port.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
