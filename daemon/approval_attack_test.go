package daemon

import (
	"io"
	"log/slog"
	"net/http"
	"os"
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

// whileHeld runs change (a request that swaps the vault) until its reload
// of the roots is held, then asks for an upload token without a code, as
// the worm's request that read the old roots, and lets the change end.
func whileHeld(t *testing.T, b *approvalBed, h *heldReload, change func()) (int, localapi.Error) {
	t.Helper()
	h.armed.Store(true)
	done := make(chan struct{})
	go func() { defer close(done); change() }()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the change never reloaded the roots")
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
