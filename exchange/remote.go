package exchange

import (
	"net"
	"net/netip"
	"strings"
)

// ClientAddr is the address an exchange request came from, for the audit
// line and the refusal lines' budget. It is the peer's, unless the peer is
// one of the trusted proxies: then it is the nearest address of
// X-Forwarded-For (forwarded: the header's values, in order) that is not a
// trusted proxy's, and via is the peer. Each proxy appends the address it
// was reached from (nginx's $proxy_add_x_forwarded_for), so entries left
// of the first untrusted one are that caller's own word and never used
// (when every entry is a trusted proxy's, it is the first of them). An entry
// that cannot be read (or has an IPv6 zone) stops the walk at the proxy that
// passed it on. A caller whose own address is trusted can name any
// address: trust only the proxies' addresses.
func ClientAddr(peer string, forwarded []string, trusted []netip.Prefix) (client, via string) {
	host, _, err := net.SplitHostPort(peer)
	if err != nil {
		host = peer
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !trustedAddr(ip, trusted) {
		return host, ""
	}
	var hops []string
	for _, v := range forwarded {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client = host
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil || a.Zone() != "" {
			break // a zone is any text at all: not for the audit log
		}
		client = a.Unmap().String()
		if !trustedAddr(a, trusted) {
			break
		}
	}
	if client == host {
		return host, ""
	}
	return client, host
}

func trustedAddr(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
