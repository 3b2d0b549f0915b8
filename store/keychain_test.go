package store

import (
	"errors"
	"testing"
	"time"

	"github.com/zalando/go-keyring"

	"github.com/devpi-credd/devpi-credd/token"
)

// The keychain library's in-memory stand-in: no Secret Service, Keychain or
// Credential Manager runs in CI.
func TestKeychainRoundTrip(t *testing.T) {
	keyring.MockInit()
	k := Keychain{Name: "local"}
	if _, err := k.Load(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of nothing = %v", err)
	}
	tok, _ := token.New([]byte("k"), "alice", "abcd2345", token.Expires(time.Unix(4102444800, 0)))
	if err := k.Save(tok); err != nil {
		t.Fatal(err)
	}
	got, err := k.Load()
	if err != nil || !got.Equal(tok) {
		t.Fatalf("Load = %v, %v", got, err)
	}
	_ = keyring.Set(KeychainService, "bad", "garbage")
	if _, err := (Keychain{Name: "bad"}).Load(); !errors.Is(err, token.ErrInvalid) {
		t.Errorf("garbage entry: %v", err)
	}
	if err := k.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Load(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load after Delete = %v", err)
	}
	if err := k.Delete(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of nothing = %v", err)
	}
	var _ Backend = k
	var _ Backend = File{}
	var _ Backend = Memory{}
}
