package exchange

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	cases := []struct {
		name, peer string
		xff        []string
		client     string
		via        string
	}{
		{"no proxy trusted: the header is ignored", "192.0.2.7:4000", []string{"203.0.113.9"}, "192.0.2.7", ""},
		{"through nginx", "127.0.0.1:4000", []string{"198.51.100.3"}, "198.51.100.3", "127.0.0.1"},
		{"a forged entry left of the real one", "127.0.0.1:4000", []string{"203.0.113.9, 198.51.100.3"}, "198.51.100.3", "127.0.0.1"},
		{"two proxies", "127.0.0.1:4000", []string{"198.51.100.3, 10.1.2.3"}, "198.51.100.3", "127.0.0.1"},
		{"two headers", "127.0.0.1:4000", []string{"198.51.100.3", "10.1.2.3"}, "198.51.100.3", "127.0.0.1"},
		{"no header", "127.0.0.1:4000", nil, "127.0.0.1", ""},
		{"garbage: the proxy that passed it on", "127.0.0.1:4000", []string{"198.51.100.3, <script>, 10.1.2.3"}, "10.1.2.3", "127.0.0.1"},
		{"garbage last", "127.0.0.1:4000", []string{"198.51.100.3, evil"}, "127.0.0.1", ""},
		{"only proxies", "127.0.0.1:4000", []string{"10.9.9.9, 10.1.2.3"}, "10.9.9.9", "127.0.0.1"},
		{"IPv6 peer", "[::1]:4000", []string{"2001:db8::5"}, "2001:db8::5", "::1"},
		{"IPv4-mapped entry", "127.0.0.1:4000", []string{"::ffff:198.51.100.3"}, "198.51.100.3", "127.0.0.1"},
		{"a zone is any text", "127.0.0.1:4000", []string{"198.51.100.3, fe80::1%<script>"}, "127.0.0.1", ""},
		{"a zone behind a proxy", "127.0.0.1:4000", []string{"fe80::1%evil, 10.1.2.3"}, "10.1.2.3", "127.0.0.1"},
		{"IPv4-mapped trusted entry", "127.0.0.1:4000", []string{"198.51.100.3, ::ffff:10.1.2.3"}, "198.51.100.3", "127.0.0.1"},
	}
	for _, c := range cases {
		client, via := ClientAddr(c.peer, c.xff, trusted)
		if client != c.client || via != c.via {
			t.Errorf("%s: %q via %q, want %q via %q", c.name, client, via, c.client, c.via)
		}
	}
}

// The audit event names the caller behind a trusted proxy, and a caller
// that is no proxy cannot name another address.
func TestExchangeBehindProxy(t *testing.T) {
	f := newFixture(t, nil)
	post := func(xff string) Event {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, f.url+PathMintToken, strings.NewReader(tokenBody("garbage")))
		req.Header.Set("X-Forwarded-For", xff)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.events[len(f.events)-1]
	}
	if ev := post("203.0.113.9"); ev.Remote != "127.0.0.1" || ev.Via != "" {
		t.Errorf("no trusted proxies: %q via %q, want the peer", ev.Remote, ev.Via)
	}
	cfg := *f.cfg.Load()
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	f.cfg.Store(&cfg)
	if ev := post("203.0.113.9, 198.51.100.3"); ev.Remote != "198.51.100.3" || ev.Via != "127.0.0.1" {
		t.Errorf("behind a trusted proxy: %q via %q, want 198.51.100.3 via 127.0.0.1", ev.Remote, ev.Via)
	}
}
