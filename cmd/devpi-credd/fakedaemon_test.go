package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/token"
)

// Codes and the passphrase the fake daemon takes: codeNow is a current
// code of the enrolled authenticator, codeNew the first code of a new
// enrollment, anything else is wrong.
const (
	codeNow        = "123456"
	codeNew        = "654321"
	fakePassphrase = "correct horse"
	fakeRoot       = "http://127.0.0.1:3141/"
	fakeURI        = "otpauth://totp/devpi-credd:alice@host?secret=JBSWY3DPEHPK3PXP&issuer=devpi-credd"
)

// fakeDaemon answers the local API as the daemon does with approval: an
// upload (any URL but a +simple one) and a session that can write need a
// code; a sealed store opens with the passphrase. It keeps every request
// it got, in order.
type fakeDaemon struct {
	mu       sync.Mutex
	sealed   bool
	opened   bool
	locked   bool
	enrolled bool
	uploads  bool
	account  string
	log      []string // "PATH BODY"
}

// serve listens on dir/socket (dir private, as the client wants it).
func (f *fakeDaemon) serve(dir string) (socket string, stop func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	socket = filepath.Join(dir, "socket")
	l, err := net.Listen("unix", socket)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(f.handle)}
	go func() { _ = srv.Serve(l) }()
	return socket, func() { srv.Close() }, nil
}

func (f *fakeDaemon) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *fakeDaemon) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, r.URL.Path+" "+strings.TrimSpace(string(body)))
	fail := func(status int, code, msg string) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(localapi.Error{Error: msg, Code: code})
	}
	// checkCode is the approval gate: "" asks for a code, a wrong one is
	// refused.
	checkCode := func(code, want string) bool {
		switch code {
		case "":
			fail(401, localapi.CodeApprovalRequired, "a token that can upload needs a one-time code")
		case want:
			return true
		default:
			fail(403, localapi.CodeApprovalRefused, "the one-time code is wrong")
		}
		return false
	}
	checkPass := func(p string) bool {
		if f.sealed && p != fakePassphrase {
			fail(403, localapi.CodeRefused, "wrong passphrase")
			return false
		}
		return true
	}
	var out any
	switch r.URL.Path {
	case localapi.PathStatus:
		out = f.status()
	case localapi.PathLock:
		f.locked, f.opened = true, false
		out = f.status()
	case localapi.PathUnlock:
		var req localapi.UnlockRequest
		_ = json.Unmarshal(body, &req)
		if f.sealed && !f.opened && !checkPass(req.Passphrase) {
			return
		}
		f.locked, f.opened = false, f.sealed
		out = f.status()
	case localapi.PathApprovalBegin:
		var req localapi.ApprovalBegin
		_ = json.Unmarshal(body, &req)
		if f.enrolled && !checkCode(req.Code, codeNow) {
			return
		}
		f.account = req.Account
		out = localapi.ApprovalEnrollment{ID: "e1", URI: fakeURI, Expires: time.Now().Add(10 * time.Minute).Unix()}
	case localapi.PathApprovalConfirm:
		var req localapi.ApprovalConfirm
		_ = json.Unmarshal(body, &req)
		if req.ID != "e1" || !checkCode(req.Code, codeNew) || !checkPass(req.Passphrase) {
			return
		}
		f.enrolled, f.uploads = true, true
		out = f.status()
	case localapi.PathApprovalOff:
		var req localapi.ApprovalOff
		_ = json.Unmarshal(body, &req)
		if !checkCode(req.Code, codeNow) || !checkPass(req.Passphrase) {
			return
		}
		f.enrolled, f.uploads = false, false
		out = f.status()
	case localapi.PathCredentials:
		var req localapi.CredentialsRequest
		_ = json.Unmarshal(body, &req)
		creds, ok := f.mint(req, checkCode)
		if !ok {
			return
		}
		out = creds
	default:
		fail(404, localapi.CodeNotFound, "no such path")
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

func (f *fakeDaemon) status() localapi.Status {
	st := localapi.Status{PID: 4242, Version: "fake", Started: time.Now(), Locked: f.locked, Sealed: f.sealed, Opened: f.opened,
		Servers: []localapi.ServerStatus{{Name: "local", URL: fakeRoot}}}
	if !f.sealed || f.opened {
		st.Approval = &localapi.ApprovalStatus{Enrolled: f.enrolled, Uploads: f.uploads, Account: f.account}
		if f.uploads {
			st.Approval.UploadTTL = "2m0s"
		}
		if f.sealed {
			st.Approval.Store = "sealed"
		}
	}
	return st
}

// mint derives a real token from the scripts' root key: a read for a
// +simple URL, an upload otherwise; a session without a code, with
// approval on, reads only.
func (f *fakeDaemon) mint(req localapi.CredentialsRequest, checkCode func(code, want string) bool) (*localapi.Credentials, bool) {
	root, err := token.New(scriptRootKey, "alice", "abcd2345", token.Expires(time.Now().Add(24*time.Hour)))
	if err != nil {
		panic(err)
	}
	ttl := time.Hour
	var allowed []string
	switch {
	case !f.uploads:
	case req.Session && req.Code == "":
		allowed = []string{"pkg_read", "toxresult_upload"}
	case strings.Contains(req.URL, "+simple"):
		allowed = []string{"pkg_read"}
	default:
		if !checkCode(req.Code, codeNow) {
			return nil, false
		}
		ttl = 2 * time.Minute
	}
	exp := time.Now().Add(ttl)
	t, err := root.Derive(token.Expires(exp))
	if err == nil && allowed != nil {
		var r token.Restriction
		if r, err = token.Allowed(allowed...); err == nil {
			t, err = t.Derive(r)
		}
	}
	if err != nil {
		panic(err)
	}
	return &localapi.Credentials{Username: "alice", Password: t.Reveal(), Expires: exp.Unix(), Server: "local", TokenID: "abcd2345"}, true
}

// fakedaemon [sealed] [approval]: serves a fakeDaemon for the rest of
// the script on $WORK/run/socket, in $DEVPI_CREDD_SOCKET; sealed: its
// store is sealed and not open (passphrase "correct horse"); approval:
// an authenticator is enrolled and uploads need codes (123456 is a
// current one, 654321 a new enrollment's first).
func cmdFakedaemon(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("usage: fakedaemon [sealed] [approval]")
	}
	f := &fakeDaemon{}
	for _, a := range args {
		switch a {
		case "sealed":
			f.sealed = true
		case "approval":
			f.enrolled, f.uploads, f.account = true, true, "alice@host"
		default:
			ts.Fatalf("usage: fakedaemon [sealed] [approval]")
		}
	}
	socket, stop, err := f.serve(ts.MkAbs("run"))
	if err != nil {
		ts.Fatalf("%v", err)
	}
	ts.Defer(stop)
	ts.Setenv("DEVPI_CREDD_SOCKET", socket)
}
