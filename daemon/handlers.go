package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/localapi"
)

type peerKey struct{}

// maxBody bounds a request body.
const maxBody = 64 << 10

// Handler is the local API, for a server whose connections carry a Peer in
// their context (see Serve).
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+localapi.PathCredentials, d.handleCredentials)
	mux.HandleFunc("GET "+localapi.PathStatus, d.handleStatus)
	mux.HandleFunc("POST "+localapi.PathLock, func(w http.ResponseWriter, r *http.Request) { d.setLocked(w, r, true) })
	mux.HandleFunc("POST "+localapi.PathUnlock, func(w http.ResponseWriter, r *http.Request) { d.setLocked(w, r, false) })
	mux.HandleFunc("POST "+localapi.PathApprovalBegin, d.handleApprovalBegin)
	mux.HandleFunc("POST "+localapi.PathApprovalConfirm, d.handleApprovalConfirm)
	mux.HandleFunc("POST "+localapi.PathApprovalOff, d.handleApprovalOff)
	return d.permit(mux)
}

// class is what a caller may do.
type class int

const (
	classStranger class = iota // refused: another uid, or one the kernel cannot name
	classAllowed               // allow_uids: scoped tokens only, unless allow_uids_grant says more
	classOwner                 // the daemon's own user, and root
)

// classOf sorts a caller by the config in force.
func (d *Daemon) classOf(p Peer, cfg *config.Config) class {
	switch {
	case !peerCredentials:
		// The socket's private directory is the only gate here.
		return classOwner
	case !p.Known:
		return classStranger
	case p.UID == d.uid || p.UID == 0:
		return classOwner
	case slices.Contains(cfg.AllowUIDs, p.UID):
		return classAllowed
	}
	return classStranger
}

// permit answers only the daemon's own user, root and the configured
// uids; everyone else gets 403, a rate-limited audit line, and the
// connection closed.
func (d *Daemon) permit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := peerFrom(r)
		var admit error
		if d.opts.AdmitPeer != nil {
			admit = d.opts.AdmitPeer(peer)
		}
		if admit == nil && d.classOf(peer, d.Config()) != classStranger {
			next.ServeHTTP(w, r)
			return
		}
		msg := fmt.Sprintf("uid %d may not use this daemon (it serves uid %d)", peer.UID, d.uid)
		switch {
		case admit != nil:
			msg = admit.Error()
		case !peer.Known:
			msg = "cannot tell who is calling: refused"
		}
		d.refuse(auditEntry{Time: d.opts.Now().UTC(), Event: "refuse", Peer: peer}, msg)
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusForbidden, localapi.CodeForbidden, msg)
	})
}

func peerFrom(r *http.Request) Peer {
	p, _ := r.Context().Value(peerKey{}).(Peer)
	return p
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, localapi.Error{Error: msg, Code: code})
}

// apiError is a refusal with its HTTP status. A miss is a lookup for a
// service that is not ours: answered, but neither audited nor counted as
// a refusal.
type apiError struct {
	status int
	code   string
	msg    string
	miss   bool
	// audited: its audit line is written already (a code checked).
	audited bool
}

func (e *apiError) Error() string { return e.msg }

func (d *Daemon) handleCredentials(w http.ResponseWriter, r *http.Request) {
	peer := peerFrom(r)
	var req localapi.CredentialsRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil {
		err = localapi.DecodeStrict(body, &req)
	}
	if err != nil {
		msg := "the request is not a JSON credentials request: " + err.Error()
		d.refuse(auditEntry{Time: d.opts.Now().UTC(), Event: "refuse", Peer: peer}, msg)
		writeError(w, http.StatusBadRequest, localapi.CodeBadRequest, msg)
		return
	}
	creds, err := d.MintFor(r.Context(), req, peer, "")
	var aerr *apiError
	if errors.As(err, &aerr) {
		writeError(w, aerr.status, aerr.code, aerr.msg)
		return
	}
	writeJSON(w, http.StatusOK, creds)
}

func (d *Daemon) setLocked(w http.ResponseWriter, r *http.Request, lock bool) {
	peer := peerFrom(r)
	event := map[bool]string{true: "lock", false: "unlock"}[lock]
	if cfg := d.Config(); d.classOf(peer, cfg) != classOwner && !cfg.Grants(config.GrantLock) {
		msg := fmt.Sprintf("%s is for uid %d and root: uid %d may get scoped tokens only (allow_uids_grant)", event, d.uid, peer.UID)
		d.refuse(auditEntry{Time: d.opts.Now().UTC(), Event: "refuse", Peer: peer, Op: event}, msg)
		writeError(w, http.StatusForbidden, localapi.CodeForbidden, msg)
		return
	}
	var req localapi.UnlockRequest
	sealing(w)
	if !d.decode(w, r, peer, event, &req) {
		return
	}
	if aerr := d.sealOrUnseal(lock, req, peer); aerr != nil {
		writeError(w, aerr.status, aerr.code, aerr.msg)
		return
	}
	if d.opts.LockFile != "" {
		var err error
		if lock {
			err = safefile.Write(d.opts.LockFile, []byte("locked by 'devpi-credd lock'; 'devpi-credd unlock' removes this file\n"), 0o600)
		} else if err = os.Remove(d.opts.LockFile); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, localapi.CodeUnavailable, "keeping the lock: "+err.Error())
			return
		}
	}
	if d.locked.Swap(lock) != lock {
		// A lock holds even when it cannot be recorded: it only takes.
		_ = d.writeAudit(auditEntry{Time: d.opts.Now().UTC(), Event: event, Peer: peer})
		d.log.Info(event, "peer_uid", peer.UID, "peer_pid", peer.PID)
	}
	writeJSON(w, http.StatusOK, d.Status())
}

// sealOrUnseal: lock drops the opened sealed store from memory; unlock
// opens it with the passphrase, which a sealed store needs. Each open and
// each wrong passphrase is audited.
func (d *Daemon) sealOrUnseal(lock bool, req localapi.UnlockRequest, peer Peer) *apiError {
	if lock {
		if d.reseal() {
			d.reloadRoots()
		}
		return nil
	}
	if !d.approvals.sealed() {
		return nil
	}
	if req.Passphrase == "" {
		return &apiError{status: http.StatusBadRequest, code: localapi.CodeSealed, msg: "the tokens are in a sealed store: unlock needs its passphrase"}
	}
	aerr := d.unseal(req.Passphrase)
	reason := "opened"
	if aerr != nil {
		reason = aerr.msg
	}
	_ = d.writeAudit(auditEntry{Time: d.opts.Now().UTC(), Event: "unseal", Peer: peer, Reason: reason})
	if aerr != nil {
		d.log.Warn("sealed store not opened", "reason", aerr.msg, "peer_uid", peer.UID, "peer_pid", peer.PID)
		return aerr
	}
	d.reloadRoots()
	return nil
}

// decode reads a JSON request body into v, strictly; an empty body is
// the zero value. A bad one is answered 400 and audited; false then.
func (d *Daemon) decode(w http.ResponseWriter, r *http.Request, peer Peer, op string, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err == nil && len(bytes.TrimSpace(body)) > 0 {
		err = localapi.DecodeStrict(body, v)
	}
	if err != nil {
		msg := "the request body is not what " + op + " takes: " + err.Error()
		d.refuse(auditEntry{Time: d.opts.Now().UTC(), Event: "refuse", Peer: peer, Op: op}, msg)
		writeError(w, http.StatusBadRequest, localapi.CodeBadRequest, msg)
		return false
	}
	return true
}

func (d *Daemon) handleApprovalBegin(w http.ResponseWriter, r *http.Request) {
	var req localapi.ApprovalBegin
	peer, ok := d.approvalRequest(w, r, "approval setup", &req)
	if !ok {
		return
	}
	e, aerr := d.beginEnrollment(req, peer)
	if aerr != nil {
		d.approvalError(w, peer, "approval setup", aerr)
		return
	}
	writeJSON(w, http.StatusOK, e)
}

func (d *Daemon) handleApprovalConfirm(w http.ResponseWriter, r *http.Request) {
	var req localapi.ApprovalConfirm
	sealing(w)
	peer, ok := d.approvalRequest(w, r, "approval setup", &req)
	if !ok {
		return
	}
	if aerr := d.confirmEnrollment(req, peer); aerr != nil {
		d.approvalError(w, peer, "approval setup", aerr)
		return
	}
	d.reloadRoots() // a sealed store's vault was put in force again
	writeJSON(w, http.StatusOK, d.Status())
}

func (d *Daemon) handleApprovalOff(w http.ResponseWriter, r *http.Request) {
	var req localapi.ApprovalOff
	sealing(w)
	peer, ok := d.approvalRequest(w, r, "approval off", &req)
	if !ok {
		return
	}
	if aerr := d.turnOff(req, peer); aerr != nil {
		d.approvalError(w, peer, "approval off", aerr)
		return
	}
	d.reloadRoots() // a sealed store's vault was put in force again
	writeJSON(w, http.StatusOK, d.Status())
}

// approvalRequest admits a caller that may manage approval and reads its
// request.
func (d *Daemon) approvalRequest(w http.ResponseWriter, r *http.Request, op string, v any) (Peer, bool) {
	peer := peerFrom(r)
	if !d.mayApprove(peer) {
		d.approvalError(w, peer, op, &apiError{status: http.StatusForbidden, code: localapi.CodeForbidden,
			msg: fmt.Sprintf("%s is for uid %d and root: uid %d may get scoped tokens only (allow_uids_grant)", op, d.uid, peer.UID)})
		return peer, false
	}
	return peer, d.decode(w, r, peer, op, v)
}

func (d *Daemon) approvalError(w http.ResponseWriter, peer Peer, op string, aerr *apiError) {
	if !aerr.audited {
		d.refuse(auditEntry{Time: d.opts.Now().UTC(), Event: "refuse", Peer: peer, Op: op}, aerr.msg)
	} else {
		d.refused.Add(1)
	}
	writeError(w, aerr.status, aerr.code, aerr.msg)
}

// sealing gives a request that opens or seals the sealed store the time
// scrypt takes (localapi.SealTimeout), past the server's 10 s write timeout.
func sealing(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(localapi.SealTimeout))
}

func (d *Daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, d.Status())
}

// Status reports the daemon's state.
func (d *Daemon) Status() localapi.Status {
	snap := d.state.Load()
	cfg := snap.cfg
	st := localapi.Status{
		PID: os.Getpid(), Version: d.opts.Version, Started: d.started, Config: cfg.Path,
		Socket: cfg.Socket, SharedSocket: cfg.SharedSocket, AuditLog: cfg.AuditLog, DefaultTTL: cfg.DefaultTTL.String(),
		MaxTTL: cfg.MaxTTL.String(), MaxSession: cfg.MaxSessionTTL.String(), Locked: d.locked.Load(),
		Minted: d.minted.Load(), Refused: d.refused.Load(), Missed: d.missed.Load(), Dropped: d.dropped.Load(),
		Servers: []localapi.ServerStatus{}, Hardening: d.opts.Hardening,
	}
	d.approvalStatus(&st)
	if e := d.cfgErr.Load(); e != nil {
		st.ConfigError = *e
	}
	if e := d.auditErr.Load(); e != nil {
		st.AuditError = *e
	}
	st.Exchange, st.Exchanged, st.ExchangeDropped = d.ExchangeAddr(), d.exchanged.Load(), d.xdropped.Load()
	roots := snap.roots
	for _, s := range cfg.Servers {
		ss := localapi.ServerStatus{Name: s.Name, URL: s.URL.String(), ReadScope: s.ReadScope}
		if n, ok := d.perServer.Load(s.Name); ok {
			ss.Minted = n.(*atomic.Int64).Load()
		}
		if rs := roots[s.Name]; rs != nil {
			ss.Store = rs.store
			if rs.err != nil {
				ss.Error = rs.err.Error()
			} else {
				ss.User, ss.TokenID = rs.tok.User(), rs.tok.ID()
				if e := rs.tok.Scope().Expires; e != nil {
					ss.Expires = e.Unix()
				}
			}
		}
		st.Servers = append(st.Servers, ss)
	}
	return st
}
