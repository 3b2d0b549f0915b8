package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// The exchange's connections. Its listener faces the network and shares
// the daemon's descriptors with the owner's socket, the audit log and the
// files a reload reads: a flood of connections that took them all would
// stop local mints and make a reload drop the root tokens. So the
// exchange gets what the descriptor limit (RLIMIT_NOFILE's soft limit,
// which Go raises to the hard one at start) leaves after a reserve, two
// descriptors a connection, and a share of that per remote network.
const (
	// fdReserve is kept for all but the exchange: other uids' connections
	// (maxOtherConns, 64), the owner's, the sockets and their locks, the
	// audit log, the watcher, a reload's config and token files (and a
	// keychain helper's pipes), outgoing HTTP to devpi and to issuers,
	// stdio and the runtime's own.
	fdReserve = 256
	// fdsPerExchangeConn: the connection, and the replay record or issuer
	// fetch that answering it may open.
	fdsPerExchangeConn = 2
	// minExchangeConns: below this the exchange would be no use; the
	// daemon refuses to open it rather than take the reserve.
	minExchangeConns = 16
	// maxExchangeConns bounds the exchange whatever the limit (each idle
	// connection costs a goroutine and buffers, ~10 KiB).
	maxExchangeConns = 4096
	// maxExchangeConnsPerAddr bounds one remote address (an IPv6 /64): a
	// CI job makes one or two at a time. A trusted proxy's connections
	// count in the total only: every caller behind it shares its address.
	maxExchangeConnsPerAddr = 32
	// Connections that say nothing, or nothing more, are closed soon: a
	// client's requests (audience, mint-token, burn-token) come within a
	// second or two of each other.
	exchangeHeaderTimeout = 5 * time.Second
	exchangeIdleTimeout   = 5 * time.Second
)

var errFewDescriptors = errors.New("too few file descriptors for the exchange")

// exchangeConnCap is how many connections the exchange may hold open
// under a descriptor limit of nofile: (nofile - fdReserve) / 2, at most
// maxExchangeConns; 1,024 descriptors give 384 connections.
func exchangeConnCap(nofile uint64) (int, error) {
	const least = fdReserve + fdsPerExchangeConn*minExchangeConns
	if nofile < least {
		return 0, fmt.Errorf("%w: the limit is %d, the exchange needs %d (raise LimitNOFILE= or ulimit -n)", errFewDescriptors, nofile, least)
	}
	return int(min((nofile-fdReserve)/fdsPerExchangeConn, maxExchangeConns)), nil
}

// addrKey is whom the exchange's caps (and its refusal lines) count an
// address for: an IPv4 address alone, an IPv6 address's /64 (one host's,
// or one network's, share of addresses).
func addrKey(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	bits := a.BitLen()
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// guardExchange wraps the exchange's TCP listener (under TLS, if any):
// over the total cap, or over its address's, a connection is closed at
// once, unanswered.
func (d *Daemon) guardExchange(l net.Listener) net.Listener {
	return &exchangeListener{Listener: l, d: d}
}

type exchangeListener struct {
	net.Listener
	d *Daemon
}

func (l *exchangeListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, keyed := l.d.exchangeKey(c)
		release, ok := l.d.xconns.take(key, keyed)
		if !ok {
			l.d.xdropped.Add(1)
			l.d.xcapWarn.Do(func() {
				l.d.log.Warn("the exchange is at its connection cap: closing new connections unanswered", "open", l.d.xconns.open(), "cap", l.d.xconns.total, "per_address", maxExchangeConnsPerAddr, "remote", key.String())
			})
			c.Close()
			continue
		}
		return &peerConn{Conn: c, release: release}, nil
	}
}

// exchangeKey is the TCP peer's network, and whether its own cap applies
// (not to a trusted proxy's).
func (d *Daemon) exchangeKey(c net.Conn) (netip.Prefix, bool) {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}, true
	}
	addr := a.AddrPort().Addr().Unmap()
	key := addrKey(addr)
	if x := d.Config().Exchange; x != nil {
		if slices.ContainsFunc(x.TrustedProxies, func(p netip.Prefix) bool { return p.Contains(addr) }) {
			return key, false
		}
	}
	return key, true
}
