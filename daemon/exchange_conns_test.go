package daemon

import (
	"errors"
	"net/netip"
	"testing"
)

// The exchange's connection cap, as docs/trusted-publishing.md gives it:
// what the descriptor limit leaves after the reserve, two a connection.
func TestExchangeConnCap(t *testing.T) {
	for _, tt := range []struct {
		nofile uint64
		want   int
	}{
		{1024, 384},
		{4096, 1920},
		{fdReserve + 2*minExchangeConns, minExchangeConns},
		{1 << 20, maxExchangeConns},
	} {
		if got, err := exchangeConnCap(tt.nofile); err != nil || got != tt.want {
			t.Errorf("limit %d: %d, %v; want %d", tt.nofile, got, err, tt.want)
		}
	}
	for _, nofile := range []uint64{0, 256, fdReserve + 2*minExchangeConns - 1} {
		if _, err := exchangeConnCap(nofile); !errors.Is(err, errFewDescriptors) {
			t.Errorf("limit %d: %v, want a refusal", nofile, err)
		}
	}
}

// Connections are counted per IPv4 address and per IPv6 /64, the same
// networks as refusal lines are.
func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.3":          "198.51.100.3/32",
		"::ffff:198.51.100.3":   "198.51.100.3/32",
		"2001:db8:1:2::5":       "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::9":  "2001:db8:1:2::/64",
		"fe80::1%eth0":          "fe80::/64",
		"2001:db8:1:3:ffff::99": "2001:db8:1:3::/64",
	} {
		if got := addrKey(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
