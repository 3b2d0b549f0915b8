package store

import (
	"errors"
	"fmt"

	"github.com/zalando/go-keyring"

	"github.com/devpi-credd/devpi-credd/token"
)

// KeychainService is the service name under which tokens are kept in the OS
// keychain (Secret Service, macOS Keychain, Windows Credential Manager);
// the account is the server's name.
const KeychainService = "devpi-credd"

// Keychain is a token kept in the OS keychain under the server's name.
type Keychain struct {
	Name string
}

// Load reads and parses the token.
func (k Keychain) Load() (*token.Token, error) {
	s, err := keyring.Get(KeychainService, k.Name)
	if errors.Is(err, keyring.ErrNotFound) {
		return nil, fmt.Errorf("%w in the keychain for server %s", ErrNotFound, k.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the keychain: %w", err)
	}
	t, err := token.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("keychain entry for %s: %w", k.Name, err)
	}
	return t, nil
}

// Save stores the token, replacing what was there.
func (k Keychain) Save(t *token.Token) error {
	if err := keyring.Set(KeychainService, k.Name, t.Reveal()); err != nil {
		return fmt.Errorf("writing the keychain: %w", err)
	}
	return nil
}

// String says where the token is, for status and messages.
func (k Keychain) String() string { return "keychain:" + KeychainService + "/" + k.Name }

// Delete removes the keychain entry.
func (k Keychain) Delete() error {
	err := keyring.Delete(KeychainService, k.Name)
	if errors.Is(err, keyring.ErrNotFound) {
		return fmt.Errorf("%w in the keychain for server %s", ErrNotFound, k.Name)
	}
	if err != nil {
		return fmt.Errorf("writing the keychain: %w", err)
	}
	return nil
}
