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
	now := d.opts.Now()
	scope, err := usableRoot(root, srv, "", now)
	if err != nil {
		return nil, nil, err
	}
	limits, err := p.Limits.Intersect(srv.Limits)
	if err == nil {
		_, err = limits.Intersect(token.Limits{Allowed: scope.Allowed, Indexes: scope.Indexes, Projects: scope.Projects})
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
	if cfg.Exchange.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Exchange.TLSCert, cfg.Exchange.TLSKey)
		if err != nil {
			l.Close()
			return fmt.Errorf("the exchange's certificate: %w", err)
		}
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	if dir := cfg.Exchange.ReplayDir; dir != "" {
		if err := (&exchange.DirReplay{Dir: dir}).Check(); err != nil {
			l.Close()
			return fmt.Errorf("the exchange: %w", err)
		}
	}
	d.exchangeL, d.replayDir = l, cfg.Exchange.ReplayDir
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
	if d.replayDir != "" {
		replay = &exchange.DirReplay{Dir: d.replayDir}
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
	d.log.Info("exchange serving", "listen", d.exchangeL.Addr().String(), "replay_dir", d.replayDir, "max_conns", d.xconns.total, "max_conns_per_address", maxExchangeConnsPerAddr)
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
