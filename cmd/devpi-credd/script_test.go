package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"gopkg.in/macaroon.v2"

	"github.com/devpi-credd/devpi-credd/helper"
	"github.com/devpi-credd/devpi-credd/token"
)

func TestMain(m *testing.M) {
	// "keyring" too: keyring-link points a link of that name at this test
	// binary, which must then behave as devpi-credd started as keyring.
	testscript.Main(m, map[string]func(){
		"devpi-credd":         func() { os.Exit(Main()) },
		"keyring":             func() { os.Exit(Main()) },
		"devpi-credd-keyring": func() { os.Exit(helper.KeyringMain(os.Args[1:], os.Stdout, os.Stderr, os.Getenv)) },
	})
}

// scriptRootKey stands in for a server's secret: the scripts mint root
// tokens with it and verify what devpi-credd derives from them.
var scriptRootKey = []byte("testscript root key")

// TestScripts runs the .txtar files in testdata/script: CLI sessions that
// need no server (offline commands, usage and input errors).
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("TZ", "UTC")
			e.Setenv("HOME", filepath.Join(e.WorkDir, "home"))
			e.Setenv("DEVPI_CLIENTDIR", filepath.Join(e.WorkDir, "home", "devpi-client"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mktoken":      cmdMktoken,
			"verifytoken":  cmdVerifytoken,
			"exits":        cmdExits,
			"waitfile":     cmdWaitfile,
			"jobdir":       cmdJobdir,
			"mode":         cmdMode,
			"mkcert":       cmdMkcert,
			"expand":       cmdExpand,
			"fakeexchange": cmdFakeexchange,
			"fakedaemon":   cmdFakedaemon,
		},
	})
}

// mktoken FILE USER ID [CAVEAT...]: writes a root token signed with
// scriptRootKey, mode 0600. A caveat "expires=+1h" is relative to now.
func cmdMktoken(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: mktoken FILE USER ID [CAVEAT...]")
	}
	tok, err := token.New(scriptRootKey, args[1], args[2])
	if err != nil {
		ts.Fatalf("%v", err)
	}
	for _, c := range args[3:] {
		if rest, ok := strings.CutPrefix(c, "expires=+"); ok {
			d, err := time.ParseDuration(rest)
			if err != nil {
				ts.Fatalf("%v", err)
			}
			c = "expires=" + strconv.FormatInt(time.Now().Add(d).Unix(), 10)
		}
		tok = mustDeriveRaw(ts, tok, c)
	}
	path := ts.MkAbs(args[0])
	if err := os.WriteFile(path, []byte(tok.Reveal()+"\n"), 0o600); err != nil {
		ts.Fatalf("%v", err)
	}
}

// mustDeriveRaw adds any caveat text, including PyPI JSON forms and keys
// the server does not know, which token.Derive deliberately cannot write.
func mustDeriveRaw(ts *testscript.TestScript, tok *token.Token, caveat string) *token.Token {
	key, value, _ := strings.Cut(caveat, "=")
	var r token.Restriction
	var err error
	switch key {
	case token.KeyAllowed:
		r, err = token.Allowed(value)
	case token.KeyIndexes:
		r, err = token.Indexes(value)
	case token.KeyProjects:
		r, err = token.Projects(value)
	case token.KeyExpires:
		if value == "never" {
			r = token.NeverExpires()
		} else {
			n, _ := strconv.ParseInt(value, 10, 64)
			r = token.Expires(time.Unix(n, 0))
		}
	default:
		out, err := rawCaveat(tok, caveat)
		if err != nil {
			ts.Fatalf("%v", err)
		}
		return out
	}
	if err != nil {
		ts.Fatalf("%v", err)
	}
	out, err := tok.Derive(r)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	return out
}

// verifytoken FILE [index=U/I] [project=P] [perm=P] [user=U] [reason=TEXT]:
// checks the token as the server would, with scriptRootKey, at the current
// time. Negated, the refusal must contain reason.
func cmdVerifytoken(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: verifytoken FILE [index=..] [project=..] [perm=..] [user=..]")
	}
	b, err := os.ReadFile(ts.MkAbs(args[0]))
	if err != nil {
		ts.Fatalf("%v", err)
	}
	tok, err := token.Parse(string(b))
	if err != nil {
		ts.Fatalf("%v", err)
	}
	req := token.Request{Now: time.Now()}
	reason := ""
	for _, a := range args[1:] {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "index":
			req.Index = v
		case "project":
			req.Project = v
		case "perm":
			req.Permission = v
		case "user":
			req.User = v
		case "reason":
			reason = v
		default:
			ts.Fatalf("unknown verifytoken argument %q", a)
		}
	}
	err = tok.Verify(scriptRootKey, req)
	if err != nil {
		ts.Logf("verify: %v", err)
	}
	if (err != nil) != neg {
		ts.Fatalf("verify: got %v, want refused=%v", err, neg)
	}
	if neg && reason == "" {
		ts.Fatalf("verifytoken: a negated check must say why with reason=")
	}
	if neg && !strings.Contains(err.Error(), reason) {
		ts.Fatalf("verify refused for another reason: %v, want %q", err, reason)
	}
}

// exits CODE PROGRAM [ARGS...]: runs the program and checks its exit code;
// its output is kept for stdout/stderr checks, as with exec.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}

// rawCaveat appends a caveat through the macaroon library itself.
func rawCaveat(tok *token.Token, caveat string) (*token.Token, error) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok.Reveal(), token.Prefix))
	if err != nil {
		return nil, err
	}
	var m macaroon.Macaroon
	if err := m.UnmarshalBinary(raw); err != nil {
		return nil, err
	}
	if err := m.AddFirstPartyCaveat([]byte(caveat)); err != nil {
		return nil, err
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return token.Parse(base64.RawURLEncoding.EncodeToString(b))
}

// waitFor polls cond for up to ten seconds: a deadline for a failure, not
// a guess at how long a pass takes.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// waitfile FILE: waits until FILE exists and is not empty.
func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile FILE")
	}
	if !waitFor(func() bool { st, err := os.Stat(ts.MkAbs(args[0])); return err == nil && st.Size() > 0 }) {
		ts.Fatalf("%s did not appear", args[0])
	}
}

// jobdir FILE has NAME | gone: FILE holds a path in a job's directory (its
// devpi-client directory); the job's directory holds NAME below that path,
// or goes (waited for).
func cmdJobdir(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: jobdir FILE has NAME | gone")
	}
	dir := strings.TrimSpace(ts.ReadFile(args[0]))
	if !strings.Contains(dir, "devpi-credd-exec-") {
		ts.Fatalf("%q is not in a job directory", dir)
	}
	switch args[1] {
	case "has":
		if _, err := os.Stat(filepath.Join(dir, args[2])); err != nil {
			ts.Fatalf("%v", err)
		}
	case "gone":
		job := dir[:strings.Index(dir, "devpi-credd-exec-")]
		job += strings.SplitN(dir[len(job):], string(filepath.Separator), 2)[0]
		if !waitFor(func() bool { _, err := os.Lstat(job); return errors.Is(err, os.ErrNotExist) }) {
			ts.Fatalf("the job's directory %s is still there", job)
		}
	default:
		ts.Fatalf("usage: jobdir FILE has NAME | gone")
	}
}

// mode PATH PERM: PATH's permission bits are PERM (octal).
func cmdMode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mode PATH PERM")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	if err != nil {
		ts.Fatalf("mode: bad permission %q", args[1])
	}
	st, err := os.Stat(ts.MkAbs(args[0]))
	if err != nil {
		ts.Fatalf("%v", err)
	}
	if got := st.Mode().Perm(); uint64(got) != want {
		ts.Fatalf("%s: mode %04o, want %04o", args[0], got, want)
	}
}

// mkcert CERT KEY: writes a self-signed certificate and its key (mode
// 0600), made now: no private key is kept in the repository.
func cmdMkcert(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mkcert CERT KEY")
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "exchange.test"}, DNSNames: []string{"exchange.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		ts.Fatalf("%v", err)
	}
	if err := os.WriteFile(ts.MkAbs(args[0]), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		ts.Fatalf("%v", err)
	}
	if err := os.WriteFile(ts.MkAbs(args[1]), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		ts.Fatalf("%v", err)
	}
}

// expand SRC DST: writes SRC with $VARS (such as $WORK) expanded to DST,
// mode 0600: for configs that need absolute paths.
func cmdExpand(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: expand SRC DST")
	}
	text := os.Expand(ts.ReadFile(args[0]), ts.Getenv)
	if err := os.WriteFile(ts.MkAbs(args[1]), []byte(text), 0o600); err != nil {
		ts.Fatalf("%v", err)
	}
}
