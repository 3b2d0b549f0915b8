package daemon

import (
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/localapi"
	"github.com/devpi-credd/devpi-credd/store"
)

// heldReload is a Backend option that, once armed, stops the next reading
// of root tokens (a reload) until released: a test so holds the daemon
// between putting a new vault in force and loading the roots of it, where
// a request that read the roots before the change is being served.
type heldReload struct {
	armed    atomic.Bool
	entered  chan struct{}
	released chan struct{}
}

func newHeldReload() *heldReload {
	return &heldReload{entered: make(chan struct{}), released: make(chan struct{})}
}

func (h *heldReload) backend(s config.Server) store.Backend {
	if h.armed.CompareAndSwap(true, false) {
		close(h.entered)
		<-h.released
	}
	return s.Backend()
}

// sealedBed is a personal daemon whose sealed store holds the root token
// and an enrolled authenticator, unlocked; its reloads can be held.
func sealedBed(t *testing.T) (*approvalBed, *heldReload, []byte, string) {
	t.Helper()
	b := newApprovalBed(t, nil)
	pass := "correct horse battery staple"
	secret, err := approval.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	rec := &approval.Record{Secret: secret, Account: "alice@host", Policy: approval.Policy{Uploads: true}}
	v := &store.Vault{Tokens: map[string]string{"local": mintRoot(t, "swap1234").Reveal()}, Approval: rec}
	if err := (store.Sealed{Path: store.SealedPath(b.state), WorkFactor: 10}).Seal([]byte(pass), v); err != nil {
		t.Fatal(err)
	}
	h := newHeldReload()
	b.d.Close()
	d, err := New(Options{ConfigPath: b.config, Getenv: func(string) string { return "" }, Now: b.clock.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StateDir: b.state, SealWorkFactor: 10, Backend: h.backend})
	if err != nil {
		t.Fatal(err)
	}
	b.d = d
	t.Cleanup(func() { d.Close() })
	if status, e := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: pass}, nil); status != http.StatusOK {
		t.Fatalf("unlock: %d %+v", status, e)
	}
	if _, status, e := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL}); status != http.StatusUnauthorized {
		t.Fatalf("upload without a code before the attack: %d %+v", status, e)
	}
	return b, h, secret, pass
}

// whileHeld runs change (a request that may swap the vault) until its
// reload of the roots is held, then asks for an upload token without a
// code, as the worm's request that read the old roots, and lets the
// change end. A change refused before any reload is asked after.
func whileHeld(t *testing.T, b *approvalBed, h *heldReload, change func()) (int, localapi.Error) {
	t.Helper()
	h.armed.Store(true)
	done := make(chan struct{})
	go func() { defer close(done); change() }()
	select {
	case <-h.entered:
	case <-done:
		h.armed.Store(false)
	case <-time.After(10 * time.Second):
		t.Fatal("the change neither ended nor reloaded the roots")
	}
	_, status, e := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL})
	close(h.released)
	<-done
	return status, e
}

// A worm seals a store of its own (its passphrase, no approval) over the
// person's and unlocks the open daemon with it: the approval in force
// becomes the worm's at once, while the roots of the person's store are
// still loaded. A request served in between must not pair the two.
func TestVaultSwapDoesNotPairOldRootsWithNewApproval(t *testing.T) {
	b, h, _, _ := sealedBed(t)
	worm := "the worm's own passphrase"
	if err := (store.Sealed{Path: store.SealedPath(b.state), WorkFactor: 10}).Seal([]byte(worm), &store.Vault{}); err != nil {
		t.Fatal(err)
	}
	status, e := whileHeld(t, b, h, func() {
		b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: worm}, nil)
	})
	if status == http.StatusOK {
		t.Fatalf("an upload token without a code while the worm's store was put in force: %d", status)
	}
	if e.Code == localapi.CodeApprovalRequired {
		t.Logf("refused as needing a code: %s", e.Error)
	}
	if _, status, _ := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL}); status == http.StatusOK {
		t.Fatal("an upload token without a code after the worm's store was put in force")
	}
}

// A worm removes the sealed store and locks the open daemon: once the
// vault is dropped, nothing says the daemon is sealed, and a request that
// read the roots before the lock must not find approval off.
func TestLockWithStoreRemovedMintsNothingUnapproved(t *testing.T) {
	b, h, _, _ := sealedBed(t)
	if err := os.Remove(store.SealedPath(b.state)); err != nil {
		t.Fatal(err)
	}
	status, _ := whileHeld(t, b, h, func() {
		b.call(b.owner, localapi.PathLock, struct{}{}, nil)
	})
	if status == http.StatusOK {
		t.Fatalf("an upload token without a code during the lock: %d", status)
	}
}

// A store whose approval is not the one this daemon put in force is not
// opened: neither the worm's own (its passphrase, no approval) over the
// open store, nor, after a lock, an older copy of the person's own store
// put back (the same passphrase, from before approval was set up). The
// person's vault stays in force, or the store stays shut.
func TestUnlockRefusesAnotherApproval(t *testing.T) {
	b, _, secret, pass := sealedBed(t)
	sealed := store.Sealed{Path: store.SealedPath(b.state), WorkFactor: 10}
	current, err := os.ReadFile(sealed.Path)
	if err != nil {
		t.Fatal(err)
	}
	worm := "the worm's own passphrase"
	if err := sealed.Seal([]byte(worm), &store.Vault{}); err != nil {
		t.Fatal(err)
	}
	if status, e := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: worm}, nil); status == http.StatusOK || !strings.Contains(e.Error, "approval") {
		t.Fatalf("the worm's store was opened over the person's: %d %+v", status, e)
	}
	if st := b.status(); !st.Opened || st.Servers[0].TokenID == "" || st.Approval == nil || !st.Approval.Uploads {
		t.Fatalf("the person's vault is not in force after the worm's unlock: %+v", st)
	}
	if _, status, _ := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL}); status != http.StatusUnauthorized {
		t.Fatalf("upload without a code after the worm's unlock: %d", status)
	}
	// An old copy of the person's store, without approval, put back, and
	// the daemon locked (which needs no passphrase): the person's next
	// unlock must not open it.
	old := &store.Vault{Tokens: map[string]string{"local": mintRoot(t, "swap1234").Reveal()}}
	if err := sealed.Seal([]byte(pass), old); err != nil {
		t.Fatal(err)
	}
	// Re-sealing through the daemon (off, setup) opens the store on disk
	// too: not this one.
	b.clock.add(30 * time.Second)
	if status, e := b.call(b.owner, localapi.PathApprovalOff, localapi.ApprovalOff{Code: approval.Code(secret, b.clock.Now()), Passphrase: pass}, nil); status == http.StatusOK || !strings.Contains(e.Error, "another approval") {
		t.Fatalf("approval off re-sealed an old copy of the store: %d %+v", status, e)
	}
	b.call(b.owner, localapi.PathLock, struct{}{}, nil)
	if status, e := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: pass}, nil); status == http.StatusOK || !strings.Contains(e.Error, "approval") {
		t.Fatalf("an old copy of the store was opened: %d %+v", status, e)
	}
	if _, status, _ := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL}); status == http.StatusOK {
		t.Fatal("an upload token without a code from an old copy of the store")
	}
	if n := len(b.auditLines("unseal")); n < 3 {
		t.Errorf("%d unseal lines, want one per attempt", n)
	}
	// The store as the daemon left it opens again, and holds approval.
	if err := os.WriteFile(sealed.Path, current, 0o600); err != nil {
		t.Fatal(err)
	}
	if status, e := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: pass}, nil); status != http.StatusOK {
		t.Fatalf("unlock of the person's store: %d %+v", status, e)
	}
	b.clock.add(30 * time.Second) // the refused off spent its step's code
	if _, status, e := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL, Code: approval.Code(secret, b.clock.Now())}); status != http.StatusOK {
		t.Fatalf("upload with a code: %d %+v", status, e)
	}
}

// What the person changes through the daemon moves what it expects:
// approval off, then a new token sealed beside (token login --seal, which
// unlocks the open daemon), then approval set up again.
func TestUnlockFollowsTheDaemonsOwnChanges(t *testing.T) {
	b, _, secret, pass := sealedBed(t)
	sealed := store.Sealed{Path: store.SealedPath(b.state), WorkFactor: 10}
	b.clock.add(30 * time.Second)
	if status, e := b.call(b.owner, localapi.PathApprovalOff, localapi.ApprovalOff{Code: approval.Code(secret, b.clock.Now()), Passphrase: pass}, nil); status != http.StatusOK {
		t.Fatalf("off: %d %+v", status, e)
	}
	v, err := sealed.Open([]byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	v.Tokens["other"] = mintRoot(t, "other123").Reveal()
	if err := sealed.Seal([]byte(pass), v); err != nil {
		t.Fatal(err)
	}
	if status, e := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: pass}, nil); status != http.StatusOK {
		t.Fatalf("unlock after token login --seal: %d %+v", status, e)
	}
	b.clock.add(30 * time.Second)
	b.enrol(b.owner, "", pass)
	b.call(b.owner, localapi.PathLock, struct{}{}, nil)
	if status, e := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: pass}, nil); status != http.StatusOK {
		t.Fatalf("unlock after setup and lock: %d %+v", status, e)
	}
	if _, status, _ := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL}); status != http.StatusUnauthorized {
		t.Fatalf("upload without a code after setup: %d", status)
	}
}

// A code is spent only on a request that is served: one refused for what
// the code cannot change (the user name under which the tool would send
// the token) leaves it for the person's next try.
func TestRefusedRequestDoesNotSpendTheCode(t *testing.T) {
	b, _, secret, _ := sealedBed(t)
	b.clock.add(30 * time.Second)
	code := approval.Code(secret, b.clock.Now())
	if _, status, e := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL, Code: code, Username: "mallory"}); status != http.StatusForbidden || !strings.Contains(e.Error, "user name") {
		t.Fatalf("an upload under another user name: %d %+v", status, e)
	}
	if _, status, e := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL, Code: code}); status != http.StatusOK {
		t.Fatalf("the same code for a request that is served: %d %+v", status, e)
	}
}

// The first code, which put the secret in force, is spent: taken from the
// terminal as the person types it at setup, it approves nothing more (and
// the person's setup, which went through, would show nothing amiss).
func TestSetupCodeIsSpent(t *testing.T) {
	b, _, secret, pass := sealedBed(t)
	b.clock.add(30 * time.Second)
	var e localapi.ApprovalEnrollment
	if status, aerr := b.call(b.owner, localapi.PathApprovalBegin, localapi.ApprovalBegin{Code: approval.Code(secret, b.clock.Now())}, &e); status != http.StatusOK {
		t.Fatalf("begin: %d %+v", status, aerr)
	}
	fresh, err := approval.ParseURI(e.URI)
	if err != nil {
		t.Fatal(err)
	}
	b.clock.add(30 * time.Second)
	first := approval.Code(fresh, b.clock.Now())
	if status, aerr := b.call(b.owner, localapi.PathApprovalConfirm, localapi.ApprovalConfirm{ID: e.ID, Code: first, Passphrase: pass}, nil); status != http.StatusOK {
		t.Fatalf("confirm: %d %+v", status, aerr)
	}
	if _, status, aerr := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL, Code: first}); status == http.StatusOK || !strings.Contains(aerr.Error, "used") {
		t.Fatalf("setup's code approved an upload: %d %+v", status, aerr)
	}
	b.clock.add(30 * time.Second)
	if _, status, aerr := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL, Code: approval.Code(fresh, b.clock.Now())}); status != http.StatusOK {
		t.Fatalf("the next code: %d %+v", status, aerr)
	}
}

// A system daemon whose approval file cannot be read fails closed for
// uploads; enrolment must not take the unreadable record for none and
// let a caller enrol (and so replace the person's authenticator) without
// a code.
func TestUnreadableApprovalRecordRefusesEnrolment(t *testing.T) {
	b := newApprovalBed(t, mintRoot(t, "unread12"))
	b.enrol(b.person, "", "")
	if err := os.WriteFile(store.ApprovalPath(b.state), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	if _, status, _ := b.mint(b.person, localapi.CredentialsRequest{URL: uploadURL}); status == http.StatusOK {
		t.Fatal("an upload token with the approval record unreadable")
	}
	if status, e := b.call(b.person, localapi.PathApprovalBegin, localapi.ApprovalBegin{}, nil); status == http.StatusOK {
		t.Fatalf("an enrolment without a code with the approval record unreadable: %d %+v", status, e)
	}
	if status, _ := b.call(b.person, localapi.PathApprovalOff, localapi.ApprovalOff{Code: "123456"}, nil); status == http.StatusOK {
		t.Fatal("approval off with the approval record unreadable")
	}
}

// A code sent with a read is not checked: not spent (the person's next
// upload still takes it), not audited as an attempt, and no oracle (a
// wrong one is not refused either).
func TestCodeWithAReadIsNotChecked(t *testing.T) {
	b, _, secret, _ := sealedBed(t)
	b.clock.add(30 * time.Second)
	code := approval.Code(secret, b.clock.Now())
	read := approvalServer + "+api"
	for _, c := range []string{code, "000000", "nonsense"} {
		if _, status, e := b.mint(b.owner, localapi.CredentialsRequest{URL: read, Code: c}); status != http.StatusOK {
			t.Fatalf("a read with code %q: %d %+v", c, status, e)
		}
	}
	if n := len(b.auditLines("approve")); n != 0 {
		t.Errorf("%d approve lines for reads", n)
	}
	if st := b.status(); st.Approval.Failures != 0 {
		t.Errorf("reads counted wrong codes: %+v", st.Approval)
	}
	if _, status, e := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL, Code: code}); status != http.StatusOK {
		t.Fatalf("the code after a read carried it: %d %+v", status, e)
	}
}

// One code, many requests at once (the person's and a worm's that took it
// from the terminal): one token.
func TestOneCodeOneToken(t *testing.T) {
	b, _, secret, _ := sealedBed(t)
	b.clock.add(30 * time.Second)
	code := approval.Code(secret, b.clock.Now())
	const n = 16
	got := make(chan int, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			_, status, _ := b.mint(b.owner, localapi.CredentialsRequest{URL: uploadURL, Code: code})
			got <- status
		}()
	}
	close(start)
	ok := 0
	for range n {
		if <-got == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Fatalf("%d upload tokens for one code, want 1", ok)
	}
	if lines := b.auditLines("approve"); len(lines) != n {
		t.Errorf("%d approve lines, want one per request", len(lines))
	}
}

// Wrong passphrases at unlock back off as wrong codes do: after five, the
// right one too is refused for a minute, each attempt audited; nothing
// the caller can do (lock, unlock without a passphrase) clears it.
func TestUnlockPassphrasesAreThrottled(t *testing.T) {
	b, _, _, pass := sealedBed(t)
	b.call(b.owner, localapi.PathLock, struct{}{}, nil)
	for i := range 5 {
		if status, _ := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: "guess " + itoa(i)}, nil); status != http.StatusForbidden {
			t.Fatalf("wrong passphrase %d: %d", i, status)
		}
	}
	b.call(b.owner, localapi.PathLock, struct{}{}, nil)
	b.call(b.owner, localapi.PathUnlock, struct{}{}, nil)
	if status, e := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: pass}, nil); status != http.StatusTooManyRequests || !strings.Contains(e.Error, "until") {
		t.Fatalf("the right passphrase during the backoff: %d %+v", status, e)
	}
	if n := len(b.auditLines("unseal")); n != 1+5+1 {
		t.Errorf("%d unseal lines, want one per attempt (7)", n)
	}
	b.clock.add(61 * time.Second)
	if status, e := b.call(b.owner, localapi.PathUnlock, localapi.UnlockRequest{Passphrase: pass}, nil); status != http.StatusOK {
		t.Fatalf("the right passphrase after the backoff: %d %+v", status, e)
	}
}

// Status, which every caller the daemon answers may read (the served uid
// in system mode too), holds no secret: not the authenticator's, not the
// root token, not the passphrase.
func TestStatusHoldsNoSecret(t *testing.T) {
	b, _, secret, pass := sealedBed(t)
	data, err := json.Marshal(b.status())
	if err != nil {
		t.Fatal(err)
	}
	root := mintRoot(t, "swap1234").Reveal()
	for what, s := range map[string]string{
		"the secret (base32)": base32.StdEncoding.EncodeToString(secret)[:16],
		"the secret (base64)": base64.StdEncoding.EncodeToString(secret)[:16],
		"the root token":      root[len(root)-24:],
		"the passphrase":      pass,
	} {
		if strings.Contains(string(data), s) {
			t.Errorf("status holds %s: %s", what, data)
		}
	}
	if !strings.Contains(string(data), `"uploads":true`) {
		t.Errorf("status does not say approval is on: %s", data)
	}
}
