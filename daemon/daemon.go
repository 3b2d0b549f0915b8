package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/devpi"
	"github.com/devpi-credd/devpi-credd/exchange"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

// Options configure a Daemon. Zero values get sane defaults.
type Options struct {
	ConfigPath string
	// Config, when set, is used instead of reading ConfigPath, and is never
	// reloaded (devpi-credd exec builds one in memory).
	Config  *config.Config
	Getenv  func(string) string
	Logger  *slog.Logger
	Version string
	Now     func() time.Time
	// HTTP is used to look up index bases on the servers.
	HTTP *http.Client
	// IssuerHTTP fetches identity token issuers' discovery documents and
	// keys for the exchange (default: the system's roots, which
	// SSL_CERT_FILE can name, and a 10 s timeout).
	IssuerHTTP *http.Client
	// Backend picks where a server's root token lives; the default is the
	// file or keychain the config names.
	Backend func(config.Server) store.Backend
	// RefreshEvery is how often devpi-client logins are checked (default
	// a minute).
	RefreshEvery time.Duration
	// LockFile, when set, keeps the lock across restarts: it exists while
	// the daemon is locked.
	LockFile string
	// Deadline, when set, is the latest expiry of any token: devpi-credd
	// exec sets it so that every token dies with the job.
	Deadline time.Time
	// PollEvery is how often the files are compared with what was loaded,
	// in case a change notification was lost (default 30 s; 2 s where the
	// system gives no notifications).
	PollEvery time.Duration
	// StateDir is where the sealed store (personal mode) or the approval
	// file (system mode) is looked for; "" for a job's daemon, which has
	// neither.
	StateDir string
	// SealWorkFactor is the sealed store's scrypt work factor when the
	// daemon seals it again (0: age's default; tests make it small).
	SealWorkFactor int
	// Hardening lists what the process could not do to protect its memory
	// (see internal/harden), for status.
	Hardening []string
	// AdmitPeer, when set, is asked for every request: an error refuses it
	// (exec --approve: only the job's own processes).
	AdmitPeer func(Peer) error
}

// Daemon serves the local API. Its config and the root tokens that config
// names are one snapshot, swapped whole on reload, so a request never pairs
// a new config with old tokens or sees a half-loaded state.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	started time.Time
	uid     int // the daemon's own user: its owner
	// shared is the socket allow_uids connect to, exchangeL the trusted
	// publishing exchange's TCP listener (see Listen).
	shared    net.Listener
	exchangeL net.Listener
	replayDir *exchange.DirReplay // the exchange's, opened and checked with its listener
	// peerOf asks the kernel who is calling (tests stand in for it to be
	// another uid).
	peerOf func(net.Conn) Peer
	// nofile is the descriptor limit the exchange's cap is derived from
	// (tests give a small one).
	nofile func() (uint64, error)

	state    atomic.Pointer[state]
	cfgErr   atomic.Pointer[string]
	reloadMu sync.Mutex // serialises reloads, never held by requests
	// What the files looked like when last loaded (content hashes), so a
	// lost change notification is noticed; guarded by reloadMu.
	cfgStamp  string
	tokStamps map[string]string

	minted  atomic.Int64
	refused atomic.Int64
	// missed counts lookups for services no configured server matches
	// (other tools' names, other hosts): not refusals.
	missed atomic.Int64
	// dropped counts connections closed unanswered: over the caps.
	dropped atomic.Int64
	// exchanged counts tokens handed out by the exchange, xdropped its
	// connections closed over its caps.
	exchanged atomic.Int64
	xdropped  atomic.Int64
	// locked: no mints until unlocked (devpi-credd lock, e.g. when leaving
	// the machine or after a suspected leak).
	locked    atomic.Bool
	perServer sync.Map // server name -> *atomic.Int64

	// auditMu is held shared by every audit write and exclusively to swap
	// or reopen the file, so no line goes to a closed file.
	auditMu  sync.RWMutex
	audit    *auditLog
	auditErr atomic.Pointer[string]
	refusals refusalLines

	bases     *basesCache
	approvals *approvals
	spent     budgets
	conns     connCounts
	// xconns counts the exchange's connections (see guardExchange);
	// xcapWarn says, now and then, that it is full.
	xconns   connCap[netip.Prefix]
	xcapWarn rate.Sometimes
}

// state is one consistent view: a config and its servers' root tokens.
type state struct {
	cfg   *config.Config
	roots map[string]*rootState
}

type rootState struct {
	tok   *token.Token
	err   error
	store string
}

// root is server name's long-lived token, or why none can be used.
func (st *state) root(name string) (*token.Token, error) {
	rs := st.roots[name]
	if rs == nil || rs.err != nil {
		reason := "no root token loaded"
		if rs != nil {
			reason = rs.err.Error()
		}
		return nil, fmt.Errorf("no usable token for server %s: %s", name, reason)
	}
	return rs.tok, nil
}

// New loads the config at opts.ConfigPath; an invalid config is an error
// here, and only here: later reloads keep the old one instead.
func New(opts Options) (*Daemon, error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HTTP == nil {
		opts.HTTP = devpi.DefaultHTTPClient()
		opts.HTTP.Timeout = 10 * time.Second
	}
	if opts.Backend == nil {
		opts.Backend = config.Server.Backend
	}
	if opts.RefreshEvery == 0 {
		opts.RefreshEvery = time.Minute
	}
	if opts.PollEvery == 0 {
		opts.PollEvery = 30 * time.Second
	}
	d := &Daemon{opts: opts, log: opts.Logger, started: opts.Now(), uid: os.Getuid(), peerOf: peerOf, bases: newBasesCache(), conns: newConnCounts(), nofile: softNoFile, xcapWarn: rate.Sometimes{Interval: time.Minute},
		approvals: newApprovals(opts.StateDir, opts.Now, opts.SealWorkFactor)}
	d.approvals.load()
	cfg := opts.Config
	if cfg == nil {
		// The stamp before the load: a change in between costs one more
		// reload, never a missed one.
		d.cfgStamp = stampOf(opts.ConfigPath)
		var err error
		if cfg, err = config.Load(opts.ConfigPath, opts.Getenv); err != nil {
			return nil, err
		}
	}
	if _, err := Check(cfg); err != nil {
		return nil, err
	}
	a, err := openAudit(cfg.AuditLog, d.log)
	if err != nil {
		return nil, err
	}
	d.audit = a
	d.state.Store(d.withRoots(cfg, nil))
	if opts.LockFile != "" {
		if _, err := os.Stat(opts.LockFile); err == nil {
			d.locked.Store(true)
			d.log.Warn("locked (since before this start): 'devpi-credd unlock' lets it mint", "lock_file", opts.LockFile)
		}
	}
	return d, nil
}

// Config returns the config in force.
func (d *Daemon) Config() *config.Config { return d.state.Load().cfg }

// withRoots reads the root token of every server of cfg into a new state;
// old, when set, is the state it replaces, to log only what changed.
func (d *Daemon) withRoots(cfg *config.Config, old *state) *state {
	next := &state{cfg: cfg, roots: make(map[string]*rootState, len(cfg.Servers))}
	stamps := map[string]string{}
	for _, s := range cfg.Servers {
		if s.TokenFile != "" && d.opts.Config == nil {
			stamps[s.TokenFile] = stampOf(s.TokenFile)
		}
		b := d.backend(s)
		tok, err := b.Load()
		rs := &rootState{tok: tok, err: err, store: b.String()}
		next.roots[s.Name] = rs
		var prev *rootState
		if old != nil {
			prev = old.roots[s.Name]
		}
		switch {
		case err != nil && (prev == nil || prev.err == nil || prev.err.Error() != err.Error()):
			d.log.Warn("root token unavailable", "server", s.Name, "err", err)
		case err == nil && (prev == nil || prev.tok == nil || !prev.tok.Equal(tok)):
			d.log.Info("root token loaded", "server", s.Name, "token", tok, "store", rs.store)
		}
	}
	d.tokStamps = stamps
	return next
}

// reloadRoots reads the root tokens again under the config in force.
func (d *Daemon) reloadRoots() {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	old := d.state.Load()
	d.state.Store(d.withRoots(old.cfg, old))
}

// reloadConfig loads the config file again. A config that does not load or
// validate is logged and ignored: the previous one keeps serving.
func (d *Daemon) reloadConfig() bool {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	oldState := d.state.Load()
	old := oldState.cfg
	d.cfgStamp = stampOf(d.opts.ConfigPath)
	cfg, err := config.Load(d.opts.ConfigPath, d.opts.Getenv)
	if err == nil && len(cfg.Servers) == 0 && len(old.Servers) > 0 {
		// What a reader sees of a config cut short mid-save: keep serving.
		err = fmt.Errorf("%s names no servers; keeping the previous config (remove the servers one by one, or restart)", d.opts.ConfigPath)
	}
	if err != nil {
		msg := err.Error()
		if prev := d.cfgErr.Load(); prev == nil || *prev != msg {
			d.log.Error("config not reloaded; the previous one keeps serving", "err", msg)
		}
		d.cfgErr.Store(&msg)
		return false
	}
	d.cfgErr.Store(nil)
	if cfg.Socket != old.Socket {
		d.log.Warn("socket changes take effect on restart", "socket", old.Socket, "new", cfg.Socket)
		cfg.Socket = old.Socket
	}
	if cfg.SharedSocket != old.SharedSocket || (len(cfg.AllowUIDs) > 0) != (len(old.AllowUIDs) > 0) {
		d.log.Warn("the shared socket opens or closes on restart; allow_uids apply to the peer check now", "shared_socket", old.SharedSocket, "new", cfg.SharedSocket)
	}
	d.warnExchangeChanges(old.Exchange, cfg.Exchange)
	if cfg.AuditLog != old.AuditLog {
		if err := d.reopenAudit(cfg.AuditLog); err != nil {
			d.log.Error("keeping the old audit log", "err", err)
			cfg.AuditLog = old.AuditLog
		}
	}
	d.state.Store(d.withRoots(cfg, oldState))
	d.log.Info("config reloaded", "servers", len(cfg.Servers))
	return true
}

// drift reports whether the config or a token file differs from what was
// last loaded: the check that makes a lost change notification cost one
// debounce, not a missed reload.
func (d *Daemon) drift() (cfg, tokens bool) {
	if d.opts.Config != nil {
		return false, false
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg = stampOf(d.opts.ConfigPath) != d.cfgStamp
	for path, s := range d.tokStamps {
		if stampOf(path) != s {
			tokens = true
			break
		}
	}
	return cfg, tokens
}

// Close releases the audit log, after summing up the refusals not yet
// written.
func (d *Daemon) Close() error {
	d.flushRefusals()
	d.auditMu.Lock()
	defer d.auditMu.Unlock()
	return d.audit.Close()
}

// Listen opens the configured sockets and returns the owner's, private to
// its user; with allow_uids, the shared one is kept for RunOn. Once it
// returns, clients can connect (they wait in the backlog until Serve runs).
func (d *Daemon) Listen() (net.Listener, error) {
	l, err := listen(d.Config().Socket, false)
	if err != nil {
		return nil, err
	}
	if err := d.listenShared(); err != nil {
		l.Close()
		return nil, err
	}
	if err := d.listenExchange(); err != nil {
		l.Close()
		if d.shared != nil {
			d.shared.Close()
		}
		return nil, err
	}
	return l, nil
}

// listenShared opens the shared socket when allow_uids is set (Listen does
// it; for a socket given to RunOn, by systemd, RunOn does).
func (d *Daemon) listenShared() error {
	cfg := d.Config()
	if len(cfg.AllowUIDs) == 0 || d.shared != nil {
		return nil
	}
	shared, err := listen(cfg.SharedSocket, true)
	if err != nil {
		return fmt.Errorf("shared socket: %w", err)
	}
	d.shared = shared
	return nil
}

// Run listens on the configured socket and serves it (see RunOn). The
// socket is removed when Run returns.
func (d *Daemon) Run(ctx context.Context, reload <-chan struct{}) error {
	l, err := d.Listen()
	if err != nil {
		return err
	}
	return d.RunOn(ctx, l, reload)
}

// RunOn serves the local API on l until ctx ends, and reloads the config
// and tokens when their files change or reload receives (SIGHUP). The
// files are watched before the first request is answered.
func (d *Daemon) RunOn(ctx context.Context, l net.Listener, reload <-chan struct{}) error {
	var bg sync.WaitGroup
	defer bg.Wait() // after cancel, below: deferred calls run last first
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d.opts.Config == nil {
		w := d.newWatcher()
		bg.Add(1)
		go func() { defer bg.Done(); w.run(ctx, reload) }()
	}
	bg.Add(2)
	go func() { defer bg.Done(); d.refreshDevpiClient(ctx, d.opts.RefreshEvery) }()
	go func() { defer bg.Done(); d.summarizeRefusals(ctx) }()
	if err := d.listenShared(); err != nil {
		l.Close()
		return err
	}
	if err := d.listenExchange(); err != nil {
		l.Close()
		return err
	}
	exchangeDone := make(chan error, 1)
	if d.exchangeL != nil {
		go func() { exchangeDone <- d.serveExchange(ctx) }()
	} else {
		exchangeDone <- nil
	}
	cfg := d.Config()
	ls := []net.Listener{l}
	if d.shared != nil {
		ls = append(ls, d.shared)
	}
	d.log.Info("serving", "socket", cfg.Socket, "shared_socket", cfg.SharedSocket, "config", cfg.Path, "servers", len(cfg.Servers), "audit_log", cfg.AuditLog, "peer_check", PeerCheck)
	err := d.Serve(ctx, ls...)
	cancel()
	if xerr := <-exchangeDone; err == nil && !errors.Is(xerr, http.ErrServerClosed) {
		err = xerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Serve answers the local API on ls until ctx ends, then stops
// gracefully. Connections are counted and capped per caller (see guard).
func (d *Daemon) Serve(ctx context.Context, ls ...net.Listener) error {
	srv := &http.Server{
		Handler: d.Handler(),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOfConn(c))
		},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	guarded := make([]net.Listener, len(ls))
	for i, l := range ls {
		guarded[i] = d.guard(l)
	}
	return serveUntil(ctx, srv, guarded...)
}

// serveUntil serves srv on ls until one fails or ctx ends, then shuts it
// down, gracefully for up to 5 s.
func serveUntil(ctx context.Context, srv *http.Server, ls ...net.Listener) error {
	errc := make(chan error, len(ls))
	for _, l := range ls {
		go func() { errc <- srv.Serve(l) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	return err
}
