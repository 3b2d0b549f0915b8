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

// connCounts counts open connections by owner and by other uid.
type connCounts struct {
	mu     sync.Mutex
	owner  int
	others int
	perUID map[int]int
}

// take reserves a place for a connection of p, or reports that none is
// left; release gives it back.
func (c *connCounts) take(p Peer, owner bool) (release func(), ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if owner {
		if c.owner >= maxOwnerConns {
			return nil, false
		}
		c.owner++
		return sync.OnceFunc(func() { c.mu.Lock(); c.owner--; c.mu.Unlock() }), true
	}
	if c.perUID == nil {
		c.perUID = map[int]int{}
	}
	if c.others >= maxOtherConns || c.perUID[p.UID] >= maxUIDConns {
		return nil, false
	}
	c.others++
	c.perUID[p.UID]++
	return sync.OnceFunc(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.others--
		if c.perUID[p.UID]--; c.perUID[p.UID] <= 0 {
			delete(c.perUID, p.UID)
		}
	}), true
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
