package daemon

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/store"
	"github.com/devpi-credd/devpi-credd/token"
)

// Approval: a token that can upload, and a session that can write, is
// minted only for a request carrying a fresh one-time code from the
// person's authenticator, when the policy says so. The policy and the
// secret live where the daemon's user cannot change them without the
// person: in the sealed store (personal mode; opened into memory by the
// passphrase) or in the daemon's own files (system mode, a uid of its
// own). Never in the config, which the user (and so a worm) can edit.

// unapprovedSession is what a session may do without a code while
// approval is on: read, and report test results; no upload, no index
// change, no deletion.
var unapprovedSession = []string{"pkg_read", "toxresult_upload"}

// enrollTime bounds how long a new secret waits for its first code.
const enrollTime = 10 * time.Minute

// approvals is the daemon's approval state. Its gate and unlock throttle
// outlive lock, unlock and re-enrolment: neither clears a backoff.
type approvals struct {
	stateDir string // "" for a job's daemon: no sealed store, no approval
	gate     *approval.Gate
	unlocks  *approval.Throttle

	mu sync.Mutex
	// vault is the sealed store opened in memory; nil while sealed or
	// when there is none.
	vault *store.Vault
	// rec is the record in force: the vault's, or the approval file's
	// when there is no sealed store. recErr: the file cannot be read,
	// and uploads fail closed.
	rec     *approval.Record
	recErr  error
	pending *enrollment
	// workFactor is the sealed store's scrypt work factor when re-sealing
	// (0: age's default; tests make it small).
	workFactor int
}

// enrollment is a new secret waiting for its first code, from the uid
// that began it.
type enrollment struct {
	id      string
	uid     int
	rec     approval.Record
	expires time.Time
	// gate checks its first code: wrong ones back off as the gate in
	// force does, without costing that one a backoff for a typo.
	gate *approval.Gate
}

func newApprovals(stateDir string, now func() time.Time, workFactor int) *approvals {
	return &approvals{stateDir: stateDir, gate: approval.NewGate(now), unlocks: approval.NewThrottle(now, "passphrases"), workFactor: workFactor}
}

func (a *approvals) sealedStore() store.Sealed {
	return store.Sealed{Path: store.SealedPath(a.stateDir), WorkFactor: a.workFactor}
}

func (a *approvals) approvalFile() store.ApprovalFile {
	return store.ApprovalFile{Path: store.ApprovalPath(a.stateDir)}
}

// sealed reports whether a sealed store exists (personal mode). An error
// other than its absence counts as sealed: fail closed.
func (a *approvals) sealed() bool {
	if a.stateDir == "" {
		return false
	}
	ok, err := a.sealedStore().Exists()
	return ok || err != nil
}

// load reads the approval file at start, when there is no sealed store
// (system mode; a personal daemon has none).
func (a *approvals) load() {
	if a.stateDir == "" || a.sealed() {
		return
	}
	rec, err := a.approvalFile().Load()
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, store.ErrNotFound):
		a.rec, a.recErr = nil, nil
	case err != nil:
		a.rec, a.recErr = nil, err
	default:
		a.rec, a.recErr = rec, nil
	}
}

// token is the vault's token for server name, when the vault is open and
// holds one.
func (a *approvals) token(name string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.vault == nil {
		return "", false
	}
	t, ok := a.vault.Tokens[name]
	return t, ok
}

// approve decides whether req, for target, is approved: a read always is;
// an upload or a session is when approval is off, or the request carries
// a fresh code. An upload that is not approved is refused; a session that
// is not is minted without the permissions to write (restrict). ttlCap,
// when set, bounds the token's life. Every code checked is audited here,
// whatever the outcome.
func (d *Daemon) approve(req localapi.CredentialsRequest, target Target, peer Peer, entry auditEntry) (approved bool, ttlCap time.Duration, aerr *apiError) {
	a := d.approvals
	if a.stateDir == "" || (target.Op != OpUpload && target.Op != OpSession) {
		return true, 0, nil
	}
	upload := target.Op == OpUpload
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.vault == nil && a.sealed():
		if upload {
			return false, 0, &apiError{status: http.StatusLocked, code: localapi.CodeSealed, msg: "the sealed store is not open, so the approval policy is unknown: 'devpi-credd unlock' opens it"}
		}
		return false, 0, nil
	case a.recErr != nil:
		if upload {
			return false, 0, &apiError{status: http.StatusServiceUnavailable, code: localapi.CodeUnavailable, msg: "no upload token: the approval policy cannot be read: " + a.recErr.Error()}
		}
		return false, 0, nil
	case a.rec == nil || !a.rec.Policy.Uploads:
		return true, 0, nil
	case req.Code == "" && !upload:
		return false, 0, nil
	case req.Code == "" && !a.rec.Enrolled():
		return false, 0, &apiError{status: http.StatusUnauthorized, code: localapi.CodeApprovalRequired,
			msg: "uploads need a one-time code, and no authenticator is enrolled yet: run 'devpi-credd approval setup'"}
	case req.Code == "":
		return false, 0, &apiError{status: http.StatusUnauthorized, code: localapi.CodeApprovalRequired,
			msg: "an upload needs a one-time code from your authenticator (approval is on): ask again with the code"}
	}
	if aerr := d.checkCode(a.gate, a.rec, req.Code, entry, peer, target.Op); aerr != nil {
		return false, 0, aerr
	}
	return true, a.rec.Policy.TTL(), nil
}

// checkCode checks code against rec with gate and writes one audit line
// for it: every code checked is in the audit log on a line of its own;
// those refused unchecked during a backoff go the way of refusals (a
// flood of them summed up). A line that cannot be written fails the
// request closed. nil: approved.
func (d *Daemon) checkCode(gate *approval.Gate, rec *approval.Record, code string, entry auditEntry, peer Peer, op Op) *apiError {
	err := gate.Check(rec, code)
	var backoff *approval.BackoffError
	if errors.As(err, &backoff) {
		return &apiError{status: http.StatusForbidden, code: localapi.CodeApprovalRefused, msg: err.Error()}
	}
	entry.Event, entry.Peer, entry.Op, entry.Reason = "approve", peer, string(op), "approved"
	if err != nil {
		entry.Reason = safeurl.Cap(err.Error(), maxReason)
	}
	if werr := d.writeAudit(entry); werr != nil {
		return &apiError{status: http.StatusServiceUnavailable, code: localapi.CodeUnavailable, msg: "no token: the code cannot be recorded in the audit log"}
	}
	if err != nil {
		d.log.Warn("one-time code refused", "reason", entry.Reason, "peer_uid", peer.UID, "peer_pid", peer.PID, "peer_exe", peer.Exe)
		return &apiError{status: http.StatusForbidden, code: localapi.CodeApprovalRefused, msg: err.Error(), audited: true}
	}
	return nil
}

// mayApprove: the owner (and root) manage approval; allow_uids only with
// the "approval" grant (the person a system-mode daemon serves).
func (d *Daemon) mayApprove(p Peer) bool {
	cfg := d.Config()
	switch d.classOf(p, cfg) {
	case classOwner:
		return true
	case classAllowed:
		return cfg.Grants(config.GrantApproval)
	}
	return false
}

// where says where an enrolment would be kept, or why it cannot be: the
// sealed store (open), or the daemon's own file when the caller is not
// the daemon's user (system mode: the file is out of the caller's reach).
func (d *Daemon) where(p Peer) (sealed bool, aerr *apiError) {
	a := d.approvals
	switch {
	case a.stateDir == "":
		return false, &apiError{status: http.StatusForbidden, code: localapi.CodeForbidden, msg: "a job's daemon has no approval"}
	case a.sealed() && a.vault == nil:
		return true, &apiError{status: http.StatusLocked, code: localapi.CodeSealed, msg: "the sealed store is not open: 'devpi-credd unlock' first"}
	case a.sealed():
		return true, nil
	case p.UID == d.uid || len(d.Config().AllowUIDs) == 0:
		return false, &apiError{status: http.StatusConflict, code: localapi.CodeRefused,
			msg: "approval needs a store out of your programs' reach: seal this daemon's tokens with 'devpi-credd token login --seal' (personal mode), or set up system mode (docs/approval.md)"}
	}
	return false, nil
}

// beginEnrollment makes a new secret for p, in force once confirmed.
// Enrolling again needs a current code.
func (d *Daemon) beginEnrollment(req localapi.ApprovalBegin, p Peer) (*localapi.ApprovalEnrollment, *apiError) {
	a := d.approvals
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, aerr := d.where(p); aerr != nil {
		return nil, aerr
	}
	entry := auditEntry{Time: d.opts.Now().UTC(), Event: "approve"}
	if a.rec.Enrolled() {
		if req.Code == "" {
			return nil, &apiError{status: http.StatusUnauthorized, code: localapi.CodeApprovalRequired, msg: "an authenticator is enrolled already: enrolling again needs a current code from it"}
		}
		if aerr := d.checkCode(a.gate, a.rec, req.Code, entry, p, "enroll"); aerr != nil {
			return nil, aerr
		}
	}
	secret, err := approval.NewSecret()
	if err != nil {
		return nil, &apiError{status: http.StatusInternalServerError, code: localapi.CodeUnavailable, msg: err.Error()}
	}
	account := req.Account
	if account == "" {
		account = accountOf(p)
	}
	if len(account) > 64 {
		return nil, &apiError{status: http.StatusBadRequest, code: localapi.CodeBadRequest, msg: "the account name is longer than 64 characters"}
	}
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	now := d.opts.Now()
	if a.pending != nil {
		a.pending.rec.Wipe()
	}
	a.pending = &enrollment{id: hex.EncodeToString(id), uid: p.UID, expires: now.Add(enrollTime), gate: approval.NewGate(d.opts.Now),
		rec: approval.Record{Secret: secret, Account: account, Policy: approval.Policy{Uploads: true}}}
	_ = d.writeAudit(auditEntry{Time: now.UTC(), Event: "approval_begin", Peer: p, Note: "account " + account})
	return &localapi.ApprovalEnrollment{ID: a.pending.id, URI: approval.URI(secret, "devpi-credd", account), Expires: a.pending.expires.Unix()}, nil
}

// accountOf names p for an authenticator app: user@host.
func accountOf(p Peer) string {
	name := strconv.Itoa(p.UID)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

// confirmEnrollment puts the pending secret in force, once its first code
// checks, and turns approval on for uploads.
func (d *Daemon) confirmEnrollment(req localapi.ApprovalConfirm, p Peer) *apiError {
	a := d.approvals
	a.mu.Lock()
	defer a.mu.Unlock()
	sealed, aerr := d.where(p)
	if aerr != nil {
		return aerr
	}
	now := d.opts.Now()
	pe := a.pending
	if pe == nil || pe.id != req.ID || pe.uid != p.UID || !now.Before(pe.expires) {
		return &apiError{status: http.StatusNotFound, code: localapi.CodeRefused, msg: "no such enrolment waits (they last 10 minutes): run 'devpi-credd approval setup' again"}
	}
	// The new secret's first code proves the app holds it; a gate of its
	// own, so that a typo costs no backoff of the one in force.
	if aerr := d.checkCode(pe.gate, &pe.rec, req.Code, auditEntry{Time: now.UTC()}, p, "enroll"); aerr != nil {
		aerr.msg = "the code is not one of the new authenticator's: " + aerr.msg
		return aerr
	}
	rec := pe.rec
	rec.Secret = append([]byte(nil), pe.rec.Secret...)
	rec.Since = now.UTC()
	if err := a.persist(&rec, sealed, req.Passphrase); err != nil {
		rec.Wipe()
		return err
	}
	pe.rec.Wipe()
	a.pending = nil
	_ = d.writeAudit(auditEntry{Time: now.UTC(), Event: "approval_on", Peer: p, Note: "account " + rec.Account})
	d.log.Info("approval on: uploads need a one-time code", "account", rec.Account, "peer_uid", p.UID)
	return nil
}

// turnOff removes approval, given a current code.
func (d *Daemon) turnOff(req localapi.ApprovalOff, p Peer) *apiError {
	a := d.approvals
	a.mu.Lock()
	defer a.mu.Unlock()
	sealed, aerr := d.where(p)
	if aerr != nil {
		return aerr
	}
	if !a.rec.Enrolled() {
		return &apiError{status: http.StatusConflict, code: localapi.CodeRefused, msg: "no authenticator is enrolled: approval is not on"}
	}
	if aerr := d.checkCode(a.gate, a.rec, req.Code, auditEntry{Time: d.opts.Now().UTC()}, p, "approval_off"); aerr != nil {
		return aerr
	}
	var off *approval.Record
	if !sealed {
		off = &approval.Record{} // the daemon's file says so: off
	}
	if aerr := a.persist(off, sealed, req.Passphrase); aerr != nil {
		return aerr
	}
	_ = d.writeAudit(auditEntry{Time: d.opts.Now().UTC(), Event: "approval_off", Peer: p})
	d.log.Warn("approval off: uploads need no code", "peer_uid", p.UID)
	return nil
}

// persist keeps rec (nil: none) where the approval lives, then puts it in
// force. Sealed: the passphrase must open the store as it is on disk (so
// that no caller can re-seal it under a passphrase of its own), which is
// then sealed again with the new record. Called with a.mu held.
func (a *approvals) persist(rec *approval.Record, sealed bool, passphrase string) *apiError {
	if !sealed {
		if err := a.approvalFile().Save(rec); err != nil {
			return &apiError{status: http.StatusInternalServerError, code: localapi.CodeUnavailable, msg: "keeping the approval: " + err.Error()}
		}
		a.rec.Wipe()
		a.rec, a.recErr = rec, nil
		return nil
	}
	if passphrase == "" {
		return &apiError{status: http.StatusBadRequest, code: localapi.CodeBadRequest, msg: "the sealed store's passphrase is needed to keep the approval in it"}
	}
	v, aerr := a.open(passphrase)
	if aerr != nil {
		return aerr
	}
	v.Approval = rec
	pass := []byte(passphrase)
	defer clear(pass)
	if err := a.sealedStore().Seal(pass, v); err != nil {
		v.Wipe()
		return &apiError{status: http.StatusInternalServerError, code: localapi.CodeUnavailable, msg: "sealing the store: " + err.Error()}
	}
	a.swapVault(v)
	return nil
}

// open opens the sealed store with passphrase; wrong passphrases are
// throttled as wrong codes are. Called with a.mu held.
func (a *approvals) open(passphrase string) (*store.Vault, *apiError) {
	if err := a.unlocks.Allow(); err != nil {
		return nil, &apiError{status: http.StatusTooManyRequests, code: localapi.CodeRefused, msg: err.Error()}
	}
	pass := []byte(passphrase)
	defer clear(pass)
	v, err := a.sealedStore().Open(pass)
	switch {
	case errors.Is(err, store.ErrWrongPassphrase):
		ferr := a.unlocks.Fail(errors.New("wrong passphrase for the sealed store"))
		return nil, &apiError{status: http.StatusForbidden, code: localapi.CodeRefused, msg: ferr.Error()}
	case err != nil:
		return nil, &apiError{status: http.StatusInternalServerError, code: localapi.CodeUnavailable, msg: err.Error()}
	}
	a.unlocks.Succeed()
	return v, nil
}

// swapVault puts v in force (nil: sealed again), wiping what it replaces.
// Called with a.mu held.
func (a *approvals) swapVault(v *store.Vault) {
	if a.vault != nil && a.vault != v {
		a.vault.Wipe()
	}
	a.vault = v
	a.rec, a.recErr = nil, nil
	if v != nil {
		a.rec = v.Approval
	}
}

// unseal opens the sealed store with passphrase into memory.
func (d *Daemon) unseal(passphrase string) *apiError {
	a := d.approvals
	a.mu.Lock()
	defer a.mu.Unlock()
	v, aerr := a.open(passphrase)
	if aerr != nil {
		return aerr
	}
	a.swapVault(v)
	return nil
}

// reseal drops the opened store from memory: the next unlock needs the
// passphrase again. Reports whether there was one open.
func (d *Daemon) reseal() bool {
	a := d.approvals
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.vault == nil {
		return false
	}
	a.swapVault(nil)
	if a.pending != nil {
		a.pending.rec.Wipe()
		a.pending = nil
	}
	return true
}

// approvalStatus is what Status shows of approval; never the secret.
func (d *Daemon) approvalStatus(st *localapi.Status) {
	a := d.approvals
	if a.stateDir == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st.Sealed = a.sealed()
	st.Opened = a.vault != nil
	rec := a.rec
	if rec == nil && a.recErr == nil {
		return
	}
	as := &localapi.ApprovalStatus{Store: "sealed"}
	if !st.Sealed {
		as.Store = store.ApprovalPath(a.stateDir)
	}
	if rec != nil {
		as.Enrolled, as.Uploads, as.Account = rec.Enrolled(), rec.Policy.Uploads, rec.Account
		if rec.Policy.Uploads {
			as.UploadTTL = rec.Policy.TTL().String()
		}
		if !rec.Since.IsZero() {
			as.Since = rec.Since.Unix()
		}
	}
	if a.recErr != nil {
		as.Uploads = true // fail closed: see approve
	}
	gs := a.gate.State()
	as.Failures = gs.Failures
	if !gs.BlockedUntil.IsZero() {
		as.BlockedUntil = gs.BlockedUntil.Unix()
	}
	st.Approval = as
}

// sealedMessage is why a server whose token is in the unopened sealed
// store has none.
func sealedMessage(name string) string {
	return fmt.Sprintf("sealed: 'devpi-credd unlock' opens the sealed store that holds server %s's token", name)
}

// backend is where server s's root token comes from: the opened sealed
// store, when it holds one (it wins over any token file), else the
// configured store; while the sealed store is shut, a token found nowhere
// else is said to be sealed.
func (d *Daemon) backend(s config.Server) store.Backend {
	b := d.opts.Backend(s)
	a := d.approvals
	if a.stateDir == "" {
		return b
	}
	if text, ok := a.token(s.Name); ok {
		t, err := token.Parse(text)
		return sealedToken{tok: t, err: err, name: s.Name}
	}
	if a.sealed() {
		return sealedToken{fallback: b, name: s.Name}
	}
	return b
}

// sealedToken is a root token from the sealed store: the opened one's, or
// the configured store's while it is shut (see backend).
type sealedToken struct {
	tok      *token.Token
	err      error
	name     string
	fallback store.Backend
}

func (s sealedToken) Load() (*token.Token, error) {
	if s.fallback == nil {
		if s.err != nil {
			return nil, fmt.Errorf("the sealed store's token for server %s: %w", s.name, s.err)
		}
		return s.tok, nil
	}
	t, err := s.fallback.Load()
	if errors.Is(err, store.ErrNotFound) {
		return nil, errors.New(sealedMessage(s.name))
	}
	return t, err
}

func (s sealedToken) Save(*token.Token) error {
	return errors.New("the sealed store is written by 'devpi-credd token login --seal'")
}
func (s sealedToken) Delete() error { return s.Save(nil) }
func (s sealedToken) String() string {
	if s.fallback != nil {
		return s.fallback.String()
	}
	return "sealed"
}
