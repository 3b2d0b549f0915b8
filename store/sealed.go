package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"filippo.io/age"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
	"github.com/devpi-credd/devpi-credd/token"
)

// ErrWrongPassphrase is wrapped when a passphrase does not open a sealed
// store.
var ErrWrongPassphrase = errors.New("wrong passphrase")

// ErrEmptyPassphrase is wrapped when Seal is given an empty passphrase:
// it would protect nothing.
var ErrEmptyPassphrase = errors.New("an empty passphrase protects nothing")

const (
	// SealedVersion is the format of the JSON inside the age file.
	SealedVersion = 1
	// MaxSealedFile bounds a sealed store: a few tokens of a few hundred
	// bytes and one approval secret.
	MaxSealedFile = 1 << 20
	// MaxWorkFactor is the largest scrypt work factor (log2 of N) that
	// Seal writes and Open runs: age's own cap, about 15 s of unlock. The
	// factor is read from the file, and a file of the user's can be
	// edited by anything running as the user: without a cap, one asking
	// for 2^30 would keep the daemon's unlock busy for hours.
	MaxWorkFactor = 22
)

// Vault is what a sealed store holds: what must not be within the user's
// reach while the daemon runs locked.
type Vault struct {
	// Tokens maps a server's name to its long-lived token's text.
	Tokens map[string]string
	// Approval is the enrolled authenticator and the policy; nil when
	// none is set up.
	Approval *approval.Record
}

// Wipe drops what the vault holds and overwrites the approval secret in
// place. Go strings cannot be overwritten: the tokens' text is dropped
// for the collector, not zeroed.
func (v *Vault) Wipe() {
	if v == nil {
		return
	}
	clear(v.Tokens)
	v.Tokens = nil
	v.Approval.Wipe()
	v.Approval = nil
}

// check refuses a vault that would fail at its next unlock: every name
// names a server and every token parses.
func (v *Vault) check() error {
	for _, name := range slices.Sorted(maps.Keys(v.Tokens)) {
		if !ValidName(name) {
			return fmt.Errorf("server name %q is not valid (1 to 64 of a-z, 0-9, _ and -)", name)
		}
		if _, err := token.Parse(v.Tokens[name]); err != nil {
			return fmt.Errorf("token of server %s: %w", name, err)
		}
	}
	return nil
}

// sealedFile is the JSON inside the age file.
type sealedFile struct {
	Version  int               `json:"version"`
	Tokens   map[string]string `json:"tokens"`
	Approval *approval.Record  `json:"approval,omitempty"`
}

// Sealed is a vault encrypted at rest with a passphrase (age's scrypt
// recipient), so that a process of the same user that reads every file
// finds no token and no approval secret: only the daemon holds them, once
// the person has unlocked it.
type Sealed struct {
	Path string
	// WorkFactor is scrypt's log2 of N for Seal: 0 is age's default
	// (about 1 s); tests use about 10. Open takes the file's own.
	WorkFactor int
}

// SealedPath is where the personal sealed store lives, under
// devpi-credd's state directory.
func SealedPath(stateDir string) string { return filepath.Join(stateDir, "sealed.age") }

// String says where the store is, for status and messages.
func (s Sealed) String() string { return s.Path }

// Exists reports whether something is at the store's path: whatever it
// is (a link, a FIFO), the daemon must start sealed and let Open refuse
// it, rather than start unsealed.
func (s Sealed) Exists() (bool, error) {
	_, err := os.Lstat(s.Path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("looking for the sealed store: %w", err)
}

// Open decrypts the store with passphrase. The file must be a regular
// file of this user's that group and others can neither read nor write.
// Every token is parsed, so a damaged store fails here, at unlock, and
// not at the first request for that server.
func (s Sealed) Open(passphrase []byte) (*Vault, error) {
	sealed, err := safefile.ReadOwnNoLink(s.Path, MaxSealedFile)
	if err != nil {
		return nil, readFailed("sealed store", s.Path, err)
	}
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("%w for %s (empty)", ErrWrongPassphrase, s.Path)
	}
	// The string is a copy that cannot be wiped; age keeps another.
	id, err := age.NewScryptIdentity(string(passphrase))
	if err != nil {
		return nil, fmt.Errorf("opening sealed store: %w", err)
	}
	id.SetMaxWorkFactor(MaxWorkFactor)
	r, err := age.Decrypt(bytes.NewReader(sealed), id)
	if errors.Is(err, age.ErrIncorrectIdentity) {
		return nil, fmt.Errorf("%w for %s (%w)", ErrWrongPassphrase, s.Path, err)
	}
	if err != nil {
		return nil, s.damaged(err)
	}
	// The plaintext is shorter than the file: one buffer, never grown,
	// so no copy of it is left behind unwiped by this code.
	plain := make([]byte, len(sealed))
	defer clear(plain)
	n, err := readInto(r, plain)
	if err != nil {
		return nil, s.damaged(err)
	}
	v, err := parseVault(plain[:n])
	if err != nil {
		return nil, fmt.Errorf("sealed store %s: %w", s.Path, err)
	}
	return v, nil
}

func (s Sealed) damaged(err error) error {
	return fmt.Errorf("sealed store %s is damaged or not an age file: %w", s.Path, err)
}

// readInto reads r to its end into buf.
func readInto(r io.Reader, buf []byte) (int, error) {
	n := 0
	for {
		if n == len(buf) {
			return n, errors.New("more plaintext than ciphertext")
		}
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func parseVault(plain []byte) (*Vault, error) {
	// The version first, leniently, so that a newer format is told as
	// such and not as an unknown field.
	var head struct {
		Version int `json:"version"`
	}
	if err := json.Unmarshal(plain, &head); err != nil {
		return nil, fmt.Errorf("not a vault: %w", err)
	}
	if head.Version != SealedVersion {
		return nil, fmt.Errorf("format version %d, this devpi-credd reads version %d: use the devpi-credd that sealed it", head.Version, SealedVersion)
	}
	var f sealedFile
	if err := decodeStrict(plain, &f); err != nil {
		return nil, err
	}
	v := &Vault{Tokens: f.Tokens, Approval: f.Approval}
	if v.Tokens == nil {
		v.Tokens = map[string]string{}
	}
	if err := v.check(); err != nil {
		v.Wipe()
		return nil, err
	}
	return v, nil
}

// Seal encrypts v with passphrase and replaces the store atomically, mode
// 0600. The plaintext exists in memory only.
func (s Sealed) Seal(passphrase []byte, v *Vault) error {
	if len(passphrase) == 0 {
		return fmt.Errorf("sealing: %w", ErrEmptyPassphrase)
	}
	if s.WorkFactor < 0 || s.WorkFactor > MaxWorkFactor {
		return fmt.Errorf("sealing: scrypt work factor %d, want 1 to %d", s.WorkFactor, MaxWorkFactor)
	}
	if v == nil {
		v = &Vault{}
	}
	if err := v.check(); err != nil {
		return fmt.Errorf("sealing: %w", err)
	}
	f := sealedFile{Version: SealedVersion, Tokens: v.Tokens, Approval: v.Approval}
	if f.Tokens == nil {
		f.Tokens = map[string]string{}
	}
	plain, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("sealing: %w", err)
	}
	defer clear(plain)
	rcp, err := age.NewScryptRecipient(string(passphrase))
	if err != nil {
		return fmt.Errorf("sealing: %w", err)
	}
	if s.WorkFactor != 0 {
		rcp.SetWorkFactor(s.WorkFactor)
	}
	var out bytes.Buffer
	w, err := age.Encrypt(&out, rcp)
	if err != nil {
		return fmt.Errorf("sealing: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return fmt.Errorf("sealing: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("sealing: %w", err)
	}
	if out.Len() > MaxSealedFile {
		return fmt.Errorf("sealing: the store would be %d bytes, at most %d", out.Len(), MaxSealedFile)
	}
	if err := safefile.Write(s.Path, out.Bytes(), 0o600); err != nil {
		return fmt.Errorf("saving sealed store: %w", err)
	}
	return nil
}

// decodeStrict decodes one JSON value that must fill v exactly: a field
// this version does not know (a policy a newer one added) is refused
// rather than dropped at the next save. (The decoder buffers a copy of b
// that it does not wipe, as age's reader keeps its last chunk: wiping is
// as far as Go permits.)
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("not valid: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("not valid: data after the JSON value")
	}
	return nil
}

// readFailed words a failed read of the private file that holds what.
func readFailed(what, path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return notFound(fmt.Sprintf("no %s at %s", what, path))
	case errors.Is(err, safefile.ErrTooOpen), errors.Is(err, safefile.ErrNotRegular), errors.Is(err, safefile.ErrTooLarge):
		return fmt.Errorf("refusing %s: %w", what, err)
	}
	return fmt.Errorf("reading %s: %w", what, err)
}

// notFound is ErrNotFound in words that say what is missing where.
type notFound string

func (e notFound) Error() string { return string(e) }
func (notFound) Unwrap() error   { return ErrNotFound }
