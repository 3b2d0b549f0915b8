package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
)

// Peer is the process at the other end of a connection, as the kernel
// reports it. Known is false where the system cannot tell.
type Peer struct {
	UID int    `json:"uid"`
	PID int    `json:"pid"`
	Exe string `json:"exe,omitempty"`
	// The caller's parent: for a keyring helper, the tool that ran it (pip,
	// uv, twine's Python).
	PPID      int    `json:"ppid,omitempty"`
	ParentExe string `json:"parent_exe,omitempty"`
	Known     bool   `json:"-"`
	// Start is when the process that connected started (Linux, for
	// Options.AdmitPeer; see peercred.StartOf), 0 when it has ended: with
	// the pid it names that process, not one that took its pid since.
	Start uint64 `json:"-"`
}

// IsZero: no peer at all (an exchange's remote caller), left out of its
// audit line rather than read as uid 0.
func (p Peer) IsZero() bool { return p == Peer{} }

// auditEntry is one line of the audit log: every mint, every refusal (a
// flood of them summed up in refuse_summary lines), lock and unlock. It
// holds the token id and caveats, never the token or its signature.
type auditEntry struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"` // mint, refuse, refuse_summary, lock, unlock
	Peer    Peer      `json:"peer,omitzero"`
	Server  string    `json:"server,omitempty"`
	URL     string    `json:"url,omitempty"`
	Op      string    `json:"op,omitempty"`
	User    string    `json:"user,omitempty"`
	TokenID string    `json:"token_id,omitempty"`
	Caveats []string  `json:"caveats,omitempty"`
	Expires int64     `json:"expires,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Note    string    `json:"note,omitempty"`
	// A refuse_summary line: how many refusals of this uid had no line of
	// their own since Since.
	Count int        `json:"count,omitempty"`
	Since *time.Time `json:"since,omitempty"`
	// An exchange (trusted publishing): the caller's address (and the
	// trusted proxy's it came through), the identity token's issuer and
	// the claims that say where it comes from, the publisher that matched,
	// and for a refusal the checks that failed.
	Remote    string            `json:"remote,omitempty"`
	Via       string            `json:"via,omitempty"`
	Issuer    string            `json:"issuer,omitempty"`
	Publisher string            `json:"publisher,omitempty"`
	Claims    map[string]string `json:"claims,omitempty"`
	Codes     []string          `json:"codes,omitempty"`
}

// auditLog appends JSON lines to a private file, one write per line so
// lines from concurrent mints never interleave. Before each line it checks
// that the path still names the open file: a log removed or rotated away
// without a SIGHUP is created anew, so no line goes to a file nobody sees.
type auditLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
	info os.FileInfo
	log  *slog.Logger
}

// openAudit opens (or creates) the audit log: a regular file of this user,
// mode 0600 (a looser mode is tightened, and said so), in a directory made
// 0700. A FIFO or device is refused, and opening never blocks on one.
func openAudit(path string, log *slog.Logger) (*auditLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	// Checked before opening too: opening a FIFO nobody reads fails with
	// a word no user would understand.
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("audit log %s: not a regular file (%s); name a file with audit_log", path, st.Mode().Type())
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|safefile.NonBlock, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	fail := func(err error) (*auditLog, error) {
		f.Close()
		return nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if !st.Mode().IsRegular() {
		return fail(fmt.Errorf("not a regular file (%s); name a file with audit_log", st.Mode().Type()))
	}
	if runtime.GOOS != "windows" {
		if uid, ok := safefile.OwnerUID(st); ok && uid != os.Getuid() {
			return fail(fmt.Errorf("belongs to uid %d, not to this user", uid))
		}
		if perm := st.Mode().Perm(); perm != 0o600 {
			if err := f.Chmod(0o600); err != nil {
				return fail(fmt.Errorf("mode %04o, and it cannot be made 0600: %w", perm, err))
			}
			if perm&0o077 != 0 {
				log.Warn("audit log was readable or writable by others: made 0600", "audit_log", path, "mode", fmt.Sprintf("%04o", perm))
			}
		}
	}
	return &auditLog{path: path, f: f, info: st, log: log}, nil
}

func (a *auditLog) write(e auditEntry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if st, err := os.Stat(a.path); err != nil || !os.SameFile(st, a.info) {
		b, err := openAudit(a.path, a.log)
		if err != nil {
			return err
		}
		a.log.Warn("the audit log was moved or removed: writing to a new one", "audit_log", a.path)
		_ = a.f.Close()
		a.f, a.info = b.f, b.info
	}
	n, err := a.f.Write(line)
	if err != nil && n > 0 {
		// A line cut short (a full disk) is cut off, so the next one
		// starts on a line of its own.
		if st, serr := a.f.Stat(); serr == nil && st.Size() >= int64(n) {
			_ = a.f.Truncate(st.Size() - int64(n))
		}
	}
	return err
}

func (a *auditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}

// reopenAudit opens path and swaps it in once no write is in flight; on
// SIGHUP with the same path, this is what log rotation needs.
func (d *Daemon) reopenAudit(path string) error {
	a, err := openAudit(path, d.log)
	if err != nil {
		return err
	}
	d.auditMu.Lock()
	prev := d.audit
	d.audit = a
	d.auditMu.Unlock()
	return prev.Close()
}

// writeAudit appends e. A failure is kept for status and logged once when
// it starts and once when writing works again, not per line.
func (d *Daemon) writeAudit(e auditEntry) error {
	d.auditMu.RLock()
	err := d.audit.write(e)
	d.auditMu.RUnlock()
	if err != nil {
		msg := msg.OneLine(err.Error())
		if prev := d.auditErr.Swap(&msg); prev == nil || *prev != msg {
			d.log.Error("audit log cannot be written: no tokens until it can", "err", msg)
		}
		return err
	}
	if d.auditErr.Load() != nil && d.auditErr.Swap(nil) != nil {
		d.log.Info("audit log writable again: minting resumes")
	}
	return nil
}

// refuse counts a refusal and records it: a line of its own while the
// caller's uid is within its burst, else counted into a refuse_summary
// line, so that another uid cannot fill the owner's disk or log.
func (d *Daemon) refuse(e auditEntry, reason string) {
	d.refused.Add(1)
	e.Event, e.Reason = "refuse", safeurl.Cap(reason, maxReason)
	summaries, ok := d.refusals.allow(callerOf(e), e.Reason, e.Time)
	for _, s := range summaries {
		_ = d.writeAudit(s)
	}
	if !ok {
		return
	}
	_ = d.writeAudit(e)
	if e.Remote != "" {
		d.log.Info("refused", "reason", e.Reason, "remote", e.Remote, "via", e.Via)
		return
	}
	d.log.Info("refused", "url", e.URL, "reason", e.Reason, "peer_uid", e.Peer.UID, "peer_pid", e.Peer.PID)
}

// summarizeRefusals writes the pending refuse_summary lines now and then,
// so that a flood that stops is still accounted for.
func (d *Daemon) summarizeRefusals(ctx context.Context) {
	t := time.NewTicker(refusalSummaryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.flushRefusals()
		}
	}
}

func (d *Daemon) flushRefusals() {
	for _, s := range d.refusals.flush(d.opts.Now()) {
		_ = d.writeAudit(s)
	}
}

// maxReason bounds a refusal's reason in the audit log and the daemon's
// log: reasons quote what the caller sent.
const maxReason = 512

// Refusal lines per uid: a burst, then one a second; the rest are summed
// up at least every refusalSummaryEvery. Remote callers (the exchange's)
// share one more budget, refusalRemote*, as a whole.
const (
	refusalBurst        = 20
	refusalRate         = rate.Limit(1)
	refusalSummaryEvery = 10 * time.Second
	refusalRemoteBurst  = 2 * refusalBurst
	refusalRemoteRate   = rate.Limit(2)
)

// refusalLines is a token bucket of audit lines per caller, and one for
// all remote callers together: a remote address is cheap to change (an
// IPv6 host has a /64 of them; behind a trusted proxy, anyone on its
// network names one in X-Forwarded-For), so per address alone would bound
// nothing. What the shared budget holds back is counted under anyRemote.
// Local uids and remote addresses are counted in tables of their own, so
// that filling one (which starts it afresh) never refills the other's
// buckets.
type refusalLines struct {
	mu     sync.Mutex
	local  map[caller]*uidRefusals
	remote map[caller]*uidRefusals
	shared *rate.Limiter
}

// anyRemote counts the remote refusals held back by the shared budget:
// its summary line says "remote": "*".
var anyRemote = caller{uid: -1, remote: "*"}

// caller is whom refusal lines are counted for: a local uid, or, for the
// exchange, a remote address.
type caller struct {
	uid    int
	remote string
}

// callerOf: the uid of a local caller; the address of a remote one, an
// IPv6 address's /64 (addrKey, as the exchange's connection caps count).
func callerOf(e auditEntry) caller {
	if e.Remote == "" {
		return caller{uid: e.Peer.UID}
	}
	if a, err := netip.ParseAddr(e.Remote); err == nil {
		if k := addrKey(a); k.Addr().Is6() {
			return caller{uid: -1, remote: k.String()}
		}
	}
	return caller{uid: -1, remote: e.Remote}
}

type uidRefusals struct {
	lim        *rate.Limiter
	suppressed int
	since      time.Time
	reason     string
}

// allow reports whether a refusal of c gets its own line; summaries, the
// refusals held back before it, are written first.
func (r *refusalLines) allow(c caller, reason string, now time.Time) (summaries []auditEntry, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shared == nil {
		r.local, r.remote = map[caller]*uidRefusals{}, map[caller]*uidRefusals{}
		r.shared = rate.NewLimiter(refusalRemoteRate, refusalRemoteBurst)
	}
	if t := r.table(c); len(t) >= maxCallers && t[c] == nil {
		// The table starts afresh; what it held back is not lost.
		summaries = r.flushTable(t, now)
		if c.remote == "" {
			r.local = map[caller]*uidRefusals{}
		} else {
			r.remote = map[caller]*uidRefusals{}
		}
	}
	u := r.bucket(c)
	if !u.lim.AllowN(now, 1) {
		u.holdBack(reason, now)
		return summaries, false
	}
	if c.remote != "" && !r.shared.AllowN(now, 1) {
		r.bucket(anyRemote).holdBack(reason, now)
		return summaries, false
	}
	if s := r.summarize(c, u, now); s != nil {
		summaries = append(summaries, *s)
	}
	return summaries, true
}

// table is where c is counted: the local uids' or the remote addresses'.
func (r *refusalLines) table(c caller) map[caller]*uidRefusals {
	if c.remote == "" {
		return r.local
	}
	return r.remote
}

// summarize returns c's summary line, if it holds refusals back. A remote
// address's is a line of the remote callers' shared budget too: past it,
// its count joins anyRemote's, so that addresses that each hold one
// refusal back do not each get a line.
func (r *refusalLines) summarize(c caller, u *uidRefusals, now time.Time) *auditEntry {
	if u.suppressed == 0 {
		return nil
	}
	if c.remote == "" || c == anyRemote || r.shared.AllowN(now, 1) {
		return u.summary(c, now)
	}
	rest := r.bucket(anyRemote)
	if rest.suppressed == 0 || u.since.Before(rest.since) {
		rest.since = u.since
	}
	rest.suppressed += u.suppressed
	rest.reason = u.reason
	u.suppressed = 0
	return nil
}

func (r *refusalLines) bucket(c caller) *uidRefusals {
	t := r.table(c)
	u := t[c]
	if u == nil {
		u = &uidRefusals{lim: rate.NewLimiter(refusalRate, refusalBurst)}
		t[c] = u
	}
	return u
}

func (u *uidRefusals) holdBack(reason string, now time.Time) {
	if u.suppressed == 0 {
		u.since = now
	}
	u.suppressed++
	u.reason = reason
}

func (u *uidRefusals) summary(c caller, now time.Time) *auditEntry {
	since := u.since.UTC()
	s := &auditEntry{Time: now.UTC(), Event: "refuse_summary", Remote: c.remote, Reason: u.reason, Count: u.suppressed, Since: &since}
	if c.remote == "" {
		s.Peer = Peer{UID: c.uid, PID: -1}
	}
	u.suppressed = 0
	return s
}

// flush returns a summary line for every caller with refusals held back.
func (r *refusalLines) flush(now time.Time) []auditEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(r.flushTable(r.remote, now), r.flushTable(r.local, now)...)
}

// flushTable returns the summary lines of t's callers. Remote addresses
// first: what the shared budget cannot give a line joins anyRemote's,
// written last.
func (r *refusalLines) flushTable(t map[caller]*uidRefusals, now time.Time) []auditEntry {
	var out []auditEntry
	for c, u := range t {
		if c == anyRemote {
			continue
		}
		if s := r.summarize(c, u, now); s != nil {
			out = append(out, *s)
		}
	}
	if u := t[anyRemote]; u != nil {
		if s := r.summarize(anyRemote, u, now); s != nil {
			out = append(out, *s)
		}
	}
	return out
}
