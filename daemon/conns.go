package daemon

import (
	"net"
	"sync"
	"time"
)

// Connection caps. A socket shared with allow_uids is reachable by every
// local user: a flood of connections from any of them must not take the
// owner's daemon down, so the owner's and root's connections have a
// quota of their own that other uids cannot touch.
const (
	maxOwnerConns = 1024 // the owner's and root's, together
	maxOtherConns = 64   // all other uids', together
	maxUIDConns   = 8    // any one other uid's
	// strangerLife bounds a connection from a uid that will be refused,
	// whatever it sends or holds back: it is answered and closed.
	strangerLife = 2 * time.Second
)

// connCounts counts open connections on the local sockets: the owner's
// (and root's) together, and other uids' in total and per uid.
type connCounts struct {
	owner  connCap[struct{}]
	others connCap[int]
}

func newConnCounts() connCounts {
	return connCounts{owner: connCap[struct{}]{total: maxOwnerConns}, others: connCap[int]{total: maxOtherConns, perKey: maxUIDConns}}
}

// take reserves a place for a connection of p, or reports that none is
// left; release gives it back.
func (c *connCounts) take(p Peer, owner bool) (release func(), ok bool) {
	if owner {
		return c.owner.take(struct{}{}, false)
	}
	return c.others.take(p.UID, true)
}

// connCap counts open connections in total and per key (a uid, a remote
// network), and refuses one over either cap: the one mechanism behind
// the local sockets' caps and the exchange's.
type connCap[K comparable] struct {
	mu     sync.Mutex
	total  int // 0: no cap
	perKey int // 0: no cap per key
	n      int
	per    map[K]int
}

// take reserves a place for a connection of key k, counted against k's
// own cap only when keyed; release gives it back (once, however often it
// is called).
func (c *connCap[K]) take(k K, keyed bool) (release func(), ok bool) {
	keyed = keyed && c.perKey > 0
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.total > 0 && c.n >= c.total {
		return nil, false
	}
	if keyed {
		if c.per == nil {
			c.per = map[K]int{}
		}
		if c.per[k] >= c.perKey {
			return nil, false
		}
		c.per[k]++
	}
	c.n++
	return sync.OnceFunc(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.n--
		if keyed {
			if c.per[k]--; c.per[k] <= 0 {
				delete(c.per, k)
			}
		}
	}), true
}

// open is how many connections hold a place.
func (c *connCap[K]) open() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// guard wraps the daemon's listener: each connection's caller is read
// from the kernel once, at accept; over the caps the connection is closed
// unanswered, and a caller who will be refused gets a connection that
// lives strangerLife at most.
func (d *Daemon) guard(l net.Listener) net.Listener { return &guardedListener{Listener: l, d: d} }

type guardedListener struct {
	net.Listener
	d *Daemon
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := l.d.peerOf(c)
		if l.d.opts.AdmitPeer != nil && peer.Known {
			// At once: the connector may end, and another process take
			// its pid, before its request is read.
			peer.Start = connectorStart(c, peer.PID)
		}
		cl := l.d.classOf(peer, l.d.Config())
		release, ok := l.d.conns.take(peer, cl == classOwner)
		if !ok {
			l.d.dropped.Add(1)
			c.Close()
			continue
		}
		pc := &peerConn{Conn: c, peer: peer, release: release}
		if cl == classStranger {
			pc.hard = time.Now().Add(strangerLife)
			_ = c.SetDeadline(pc.hard)
		} else {
			// Only callers who may be answered are worth the look-ups.
			pc.peer.addDetails()
		}
		return pc, nil
	}
}

// peerConn is a connection with its caller, and for a stranger a hard
// deadline that the HTTP server's own deadlines cannot extend.
type peerConn struct {
	net.Conn
	peer    Peer
	hard    time.Time
	release func()
}

func (c *peerConn) Close() error {
	c.release()
	return c.Conn.Close()
}

func (c *peerConn) clamp(t time.Time) time.Time {
	if c.hard.IsZero() || (!t.IsZero() && t.Before(c.hard)) {
		return t
	}
	return c.hard
}

func (c *peerConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *peerConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *peerConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

// peerOfConn is the caller of a connection the guard accepted.
func peerOfConn(c net.Conn) Peer {
	if pc, ok := c.(*peerConn); ok {
		return pc.peer
	}
	return peerOf(c)
}
