package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/token"
)

// MintExchange mints the token of a trusted-publishing exchange: derived
// from the publisher's server's long-lived token, limited by the
// publisher's indexes, projects and permissions (and the server's
// configured limits), expiring after maxTTL and never after the long-lived
// token. The exchange writes the audit line.
func (d *Daemon) MintExchange(_ context.Context, p config.Publisher, maxTTL time.Duration) (*exchange.Minted, *exchange.Record, error) {
	if d.locked.Load() {
		return nil, nil, errors.New("the daemon is locked: 'devpi-credd unlock' lets it mint again")
	}
	st := d.state.Load()
	srv, ok := st.cfg.Server(p.Server)
	if !ok {
		return nil, nil, fmt.Errorf("server %s is not configured", p.Server)
	}
	root, err := st.root(srv.Name)
	if err != nil {
		return nil, nil, err
	}
	if err := d.approvals.forExchange(st.gen); err != nil {
		return nil, nil, err
	}
	now := d.opts.Now()
	scope, err := usableRoot(root, srv, "", now)
	if err != nil {
		return nil, nil, err
	}
	// Each list the publisher names must be allowed whole: a token for
	// less than the publisher says (one of its two indexes) would fail
	// its job's upload later and obscurely, or pass where the operator
	// thinks it cannot. A list it does not name takes the server's.
	limits, err := p.Limits.Intersect(srv.Limits)
	var all token.Limits
	if err == nil {
		all, err = limits.Intersect(token.Limits{Allowed: scope.Allowed, Indexes: scope.Indexes, Projects: scope.Projects})
	}
	if err == nil {
		err = missing(p.Limits, all)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("publisher %s asks for more than server %s's token or config allows: %v", p.Name, srv.Name, err)
	}
	expires := now.Add(maxTTL)
	if scope.Expires != nil && scope.Expires.Before(expires) {
		expires = *scope.Expires
	}
	caveats := append([]token.Restriction{token.Expires(expires)}, limits.Caveats()...)
	tok, err := root.Derive(caveats...)
	if err != nil {
		return nil, nil, err
	}
	rec := &exchange.Record{Server: srv.Name, User: root.User(), TokenID: root.ID(), Expires: expires.Unix()}
	for _, c := range caveats {
		rec.Caveats = append(rec.Caveats, c.Caveat())
	}
	return &exchange.Minted{Success: true, Token: tok.Reveal(), Username: root.User(), Expires: expires.Unix()}, rec, nil
}

// missing is an *token.OutsideError for the first list of ask that got
// lost part of what it named.
func missing(ask, got token.Limits) error {
	for _, l := range []struct {
		key       string
		ask, got  []string
		normalize func(string) string
	}{
		{token.KeyAllowed, ask.Allowed, got.Allowed, nil},
		{token.KeyIndexes, ask.Indexes, got.Indexes, nil},
		{token.KeyProjects, ask.Projects, got.Projects, token.NormalizeProject},
	} {
		norm := func(s string) string {
			if l.normalize != nil {
				return l.normalize(s)
			}
			return s
		}
		var lost []string
		for _, a := range l.ask {
			if !slices.ContainsFunc(l.got, func(g string) bool { return norm(g) == norm(a) }) {
				lost = append(lost, a)
			}
		}
		if len(lost) > 0 {
			return &token.OutsideError{Key: l.key, Given: lost, Have: l.got}
		}
	}
	return nil
}

// maxAddr bounds an address in an audit line: an IPv6 address with a
// zone is at most ~60 bytes.
const maxAddr = 64

// auditExchange writes an exchange's audit line: minted lines always (a
// token whose line cannot be written is not handed out), refusals within
// the remote address's budget of lines.
func (d *Daemon) auditExchange(ev exchange.Event) error {
	// Addresses are short; a backstop for a peer's zone, or anything else
	// a caller could stretch.
	host, via := safeurl.Cap(ev.Remote, maxAddr), safeurl.Cap(ev.Via, maxAddr)
	e := auditEntry{Time: d.opts.Now().UTC(), Event: "exchange", Remote: host, Via: via, Issuer: ev.Issuer, Publisher: ev.Publisher, Claims: ev.Claims}
	if r := ev.Reported; r != nil {
		// burn-token: a client is done with a token this exchange minted
		// (each is reported once; reports of any other are refusals).
		// Nothing is revoked.
		e.Event, e.Server, e.User, e.TokenID, e.Expires = "reported_used", r.Server, r.User, r.TokenID, r.Expires
		return d.writeAudit(e)
	}
	if ev.Refused != nil {
		e.Codes = ev.Refused.Codes()
		reason := ev.Refused.Message
		if ev.Reason != "" {
			reason += ": " + ev.Reason
		}
		d.refuse(e, "exchange: "+reason)
		return nil
	}
	if m := ev.Minted; m != nil {
		e.Server, e.User, e.TokenID, e.Caveats, e.Expires = m.Server, m.User, m.TokenID, m.Caveats, m.Expires
	}
	if err := d.writeAudit(e); err != nil {
		return err // the exchange refuses the token, and refuse counts that
	}
	d.exchanged.Add(1)
	return nil
}

// listenExchange opens the exchange's TCP listener when the config has
// an [exchange] (Listen calls it, so that it takes connections before
// Serve runs).
func (d *Daemon) listenExchange() error {
	cfg := d.Config()
	if cfg.Exchange == nil || d.exchangeL != nil {
		return nil
	}
	nofile, err := d.nofile()
	if err != nil {
		return fmt.Errorf("the exchange: reading the descriptor limit: %w", err)
	}
	conns, err := exchangeConnCap(nofile)
	if err != nil {
		return fmt.Errorf("the exchange: %w", err)
	}
	l, err := net.Listen("tcp", cfg.Exchange.Listen)
	if err != nil {
		return fmt.Errorf("the exchange's listener: %w", err)
	}
	// Under TLS, so that a connection over the caps is closed before its
	// handshake costs anything.
	d.xconns = connCap[netip.Prefix]{total: conns, perKey: maxExchangeConnsPerAddr}
	l = d.guardExchange(l)
	if tc, err := exchangeTLS(cfg.Exchange); err != nil {
		l.Close()
		return err
	} else if tc != nil {
		l = tls.NewListener(l, tc)
	}
	// The directory checked is the one used: its handle is kept.
	var replay *exchange.DirReplay
	if dir := cfg.Exchange.ReplayDir; dir != "" {
		if replay, err = exchange.OpenDirReplay(dir); err != nil {
			l.Close()
			return fmt.Errorf("the exchange: %w", err)
		}
	}
	d.exchangeL, d.replayDir = l, replay
	return nil
}

// ExchangeAddr is where the exchange listens ("" without one).
func (d *Daemon) ExchangeAddr() string {
	if d.exchangeL == nil {
		return ""
	}
	return d.exchangeL.Addr().String()
}

// serveExchange answers trusted publishing on the exchange's listener
// until ctx ends.
func (d *Daemon) serveExchange(ctx context.Context) error {
	issuerHTTP := d.opts.IssuerHTTP
	if issuerHTTP == nil {
		issuerHTTP = &http.Client{Timeout: 10 * time.Second}
	}
	var replay exchange.Replay = &exchange.MemoryReplay{}
	replayDir := ""
	if d.replayDir != nil {
		replay, replayDir = d.replayDir, d.replayDir.Dir
		defer d.replayDir.Close()
	}
	s := exchange.NewServer(exchange.Options{
		Verifier: &exchange.Verifier{HTTP: issuerHTTP, Now: d.opts.Now},
		Replay:   replay,
		Minter:   d,
		// Publishers, audience and max_ttl follow reloads; without an
		// [exchange] any more, the listener refuses until restart closes it.
		Config: func() *config.Exchange { return d.Config().Exchange },
		Audit:  d.auditExchange,
		Now:    d.opts.Now,
	})
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: exchangeHeaderTimeout,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       exchangeIdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	d.log.Info("exchange serving", "listen", d.exchangeL.Addr().String(), "replay_dir", replayDir, "max_conns", d.xconns.total, "max_conns_per_address", maxExchangeConnsPerAddr)
	return serveUntil(ctx, srv, d.exchangeL)
}

// warnExchangeChanges says which exchange changes wait for a restart: its
// listener, certificate and replay directory (publishers, audience and
// max_ttl apply at once).
func (d *Daemon) warnExchangeChanges(old, cfg *config.Exchange) {
	switch {
	case old == nil && cfg == nil:
	case old == nil:
		d.log.Warn("the exchange opens on restart", "listen", cfg.Listen)
	case cfg == nil:
		d.log.Warn("the exchange refuses every request until a restart closes it: [exchange] is gone from the config", "listen", old.Listen)
	case old.Listen != cfg.Listen || old.TLSCert != cfg.TLSCert || old.TLSKey != cfg.TLSKey || old.ReplayDir != cfg.ReplayDir:
		d.log.Warn("the exchange's listen, tls_cert, tls_key and replay_dir change on restart; its publishers changed now", "listen", old.Listen)
	}
}
