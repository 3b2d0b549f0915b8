package store

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/token"
)

// testWorkFactor keeps scrypt to a millisecond: the format is what is
// tested, not scrypt's cost.
const testWorkFactor = 10

var (
	testPass  = []byte("correct horse battery staple")
	testOther = []byte("tr0ub4dor&3")
)

func testTokenText(t *testing.T, user string) string {
	t.Helper()
	tok, err := token.New([]byte("k-"+user), user, "abcd2345", token.Expires(time.Unix(4102444800, 0)))
	if err != nil {
		t.Fatal(err)
	}
	return tok.Reveal()
}

func testVault(t *testing.T) *Vault {
	t.Helper()
	return &Vault{
		Tokens: map[string]string{
			"main":  testTokenText(t, "alice"),
			"other": testTokenText(t, "bob"),
		},
		Approval: &approval.Record{
			Secret:  []byte("0123456789abcdefghij"),
			Account: "alice@example",
			Since:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Policy:  approval.Policy{Uploads: true, UploadTTL: approval.Duration(3 * time.Minute)},
		},
	}
}

func testSealed(t *testing.T) Sealed {
	return Sealed{Path: SealedPath(t.TempDir()), WorkFactor: testWorkFactor}
}

// sealBytes seals v into s and returns the file.
func sealBytes(t *testing.T, s Sealed, v *Vault) []byte {
	t.Helper()
	if err := s.Seal(testPass, v); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sameVault(t *testing.T, got, want *Vault) {
	t.Helper()
	if len(got.Tokens) != len(want.Tokens) {
		t.Fatalf("tokens %v, want %v", got.Tokens, want.Tokens)
	}
	for name, text := range want.Tokens {
		if got.Tokens[name] != text {
			t.Errorf("token of %s differs", name)
		}
	}
	g, w := got.Approval, want.Approval
	if (g == nil) != (w == nil) {
		t.Fatalf("approval %v, want %v", g, w)
	}
	if w == nil {
		return
	}
	if !bytes.Equal(g.Secret, w.Secret) || g.Account != w.Account || !g.Since.Equal(w.Since) || g.Policy != w.Policy {
		t.Errorf("approval %+v, want %+v", g, w)
	}
}

func TestSealedRoundTrip(t *testing.T) {
	s := testSealed(t)
	if ok, err := s.Exists(); ok || err != nil {
		t.Fatalf("Exists before Seal = %v, %v", ok, err)
	}
	if _, err := s.Open(testPass); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open of nothing = %v, want ErrNotFound", err)
	}
	want := testVault(t)
	if err := s.Seal(testPass, want); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Exists(); !ok || err != nil {
		t.Fatalf("Exists after Seal = %v, %v", ok, err)
	}
	got, err := s.Open(testPass)
	if err != nil {
		t.Fatal(err)
	}
	sameVault(t, got, want)

	// No approval, no tokens: still a vault, with an empty map.
	if err := s.Seal(testPass, &Vault{}); err != nil {
		t.Fatal(err)
	}
	got, err = s.Open(testPass)
	if err != nil || got.Tokens == nil || len(got.Tokens) != 0 || got.Approval != nil {
		t.Errorf("empty vault: %+v, %v", got, err)
	}
}

// The work factor is the one asked for, and one over the cap is refused
// both ways: Seal does not write it, Open does not run it.
func TestSealedWorkFactor(t *testing.T) {
	s := testSealed(t)
	b := sealBytes(t, s, testVault(t))
	line := scryptLine(t, b)
	if !strings.HasSuffix(line, " 10") {
		t.Fatalf("stanza %q, want work factor 10", line)
	}
	for _, wf := range []int{-1, MaxWorkFactor + 1} {
		if err := (Sealed{Path: s.Path, WorkFactor: wf}).Seal(testPass, testVault(t)); err == nil {
			t.Errorf("Seal with work factor %d", wf)
		}
	}
	// A file asking for 2^30 (edited by anything of the user's): refused
	// at once, not computed for hours.
	b = bytes.Replace(b, []byte(line), []byte(strings.TrimSuffix(line, "10")+"30"), 1)
	if err := os.WriteFile(s.Path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Open(testPass); done <- err }()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), "work factor") {
			t.Errorf("Open of a work factor of 30 = %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Open ran a work factor of 30")
	}
}

func scryptLine(t *testing.T, b []byte) string {
	t.Helper()
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "-> scrypt ") {
			return line
		}
	}
	t.Fatalf("no scrypt stanza in %q", b)
	return ""
}

func TestSealedWrongPassphrase(t *testing.T) {
	s := testSealed(t)
	if err := s.Seal(testPass, testVault(t)); err != nil {
		t.Fatal(err)
	}
	for _, pass := range [][]byte{testOther, nil, []byte("correct horse battery stapl")} {
		v, err := s.Open(pass)
		if !errors.Is(err, ErrWrongPassphrase) || v != nil {
			t.Errorf("Open(%q) = %v, %v; want ErrWrongPassphrase", pass, v, err)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, string(testPass)) || len(pass) > 0 && strings.Contains(msg, string(pass)) {
			t.Errorf("the error tells a passphrase: %s", msg)
		}
		if strings.Contains(msg, "\n") || !strings.Contains(msg, s.Path) {
			t.Errorf("error %q: want one line naming the file", msg)
		}
	}
	if err := s.Seal(nil, testVault(t)); !errors.Is(err, ErrEmptyPassphrase) {
		t.Errorf("Seal with no passphrase = %v", err)
	}
}

// Any byte changed, anywhere, and the store does not open: age
// authenticates the header and every chunk. (Work factor 1: scrypt once
// per byte of the file.)
func TestSealedTampered(t *testing.T) {
	s := testSealed(t)
	s.WorkFactor = 1
	orig := sealBytes(t, s, testVault(t))
	for i := range orig {
		b := bytes.Clone(orig)
		b[i] ^= 0x01
		if err := os.WriteFile(s.Path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := s.Open(testPass)
		if err == nil || v != nil {
			t.Fatalf("byte %d of %d flipped: opened", i, len(orig))
		}
		// A flip in the wrapped file key reads as a wrong passphrase:
		// age cannot tell the two apart.
		if !errors.Is(err, ErrWrongPassphrase) && !strings.Contains(err.Error(), "is damaged or not an age file") {
			t.Fatalf("byte %d of %d flipped: %v", i, len(orig), err)
		}
	}
	for _, b := range [][]byte{orig[:len(orig)-1], append(bytes.Clone(orig), 0), nil, []byte("not age")} {
		if err := os.WriteFile(s.Path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Open(testPass); err == nil || errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("%d bytes of damage: %v", len(b), err)
		}
	}
}

// Seal writes a new file and renames it over the old one: a reader that
// opened the old file still reads it whole, and no temporary file stays.
func TestSealedReplacesAtomically(t *testing.T) {
	s := testSealed(t)
	first := testVault(t)
	if err := s.Seal(testPass, first); err != nil {
		t.Fatal(err)
	}
	old, err := os.Open(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	second := &Vault{Tokens: map[string]string{"third": testTokenText(t, "carol")}}
	if err := s.Seal(testOther, second); err != nil {
		t.Fatal(err)
	}
	got, err := s.Open(testOther)
	if err != nil {
		t.Fatal(err)
	}
	sameVault(t, got, second)
	if _, err := s.Open(testPass); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("the old passphrase: %v", err)
	}
	oldBytes, err := io.ReadAll(old)
	if err != nil {
		t.Fatal(err)
	}
	was := Sealed{Path: filepath.Join(t.TempDir(), "was.age")}
	if err := os.WriteFile(was.Path, oldBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := was.Open(testPass); err != nil {
		t.Errorf("the replaced file was written over in place: %v", err)
	} else {
		sameVault(t, v, first)
	}
	entries, _ := os.ReadDir(filepath.Dir(s.Path))
	if len(entries) != 1 {
		t.Errorf("left files behind: %v", entries)
	}
}

// sealRaw seals any plaintext, as another version (or a broken one)
// would have.
func sealRaw(t *testing.T, s Sealed, plain string) {
	t.Helper()
	r, err := age.NewScryptRecipient(string(testPass))
	if err != nil {
		t.Fatal(err)
	}
	r.SetWorkFactor(testWorkFactor)
	var out bytes.Buffer
	w, err := age.Encrypt(&out, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSealedContentRefused(t *testing.T) {
	good := testTokenText(t, "alice")
	for _, tc := range []struct {
		name, plain, want string
		is                error
	}{
		{"newer version", `{"version":2,"tokens":{},"future":true}`, "version 2", nil},
		{"no version", `{"tokens":{}}`, "version 0", nil},
		{"unknown field", `{"version":1,"tokens":{},"policy":"off"}`, "unknown field", nil},
		{"unknown approval field", `{"version":1,"tokens":{},"approval":{"policy":{"uploads":true},"off":1}}`, "unknown field", nil},
		{"trailing data", `{"version":1,"tokens":{}} {}`, "after", nil},
		{"not JSON", `version 1`, "not a vault", nil},
		{"bad token", `{"version":1,"tokens":{"main":"` + good + `","broken":"garbage-token-text"}}`, "server broken", token.ErrInvalid},
		{"bad name", `{"version":1,"tokens":{"../x":"` + good + `"}}`, `"../x"`, nil},
		{"bad duration", `{"version":1,"tokens":{},"approval":{"policy":{"upload_ttl":"soon"}}}`, "soon", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSealed(t)
			sealRaw(t, s, tc.plain)
			v, err := s.Open(testPass)
			if err == nil || v != nil {
				t.Fatalf("opened: %+v", v)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("error %q: want one line with %q", msg, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
			if strings.Contains(msg, "garbage-token-text") || strings.Contains(msg, good) {
				t.Errorf("the error tells a token: %s", msg)
			}
		})
	}
}

// Seal refuses what Open would refuse, so a store is never written that
// fails at its next unlock.
func TestSealRefusesBadVault(t *testing.T) {
	s := testSealed(t)
	for _, v := range []*Vault{
		{Tokens: map[string]string{"main": "garbage"}},
		{Tokens: map[string]string{"Main": testTokenText(t, "alice")}},
	} {
		if err := s.Seal(testPass, v); err == nil {
			t.Errorf("sealed %v", v.Tokens)
		}
	}
	if ok, _ := s.Exists(); ok {
		t.Error("a refused vault was written")
	}
}

// Nothing of the vault is in the file in any encoding it could be found
// by: the token's text and its parts, the secret raw, base64 and base32
// (as the otpauth URI spells it), the account, the JSON's keys.
func TestSealedHoldsNoPlaintext(t *testing.T) {
	s := testSealed(t)
	v := testVault(t)
	b := sealBytes(t, s, v)
	secret := v.Approval.Secret
	needles := []string{
		string(secret),
		base64.StdEncoding.EncodeToString(secret),
		base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret),
		v.Approval.Account, "alice", "version", "tokens", "uploads",
		string(testPass),
	}
	for _, text := range v.Tokens {
		needles = append(needles, text, strings.TrimPrefix(text, token.Prefix)[:24], text[len(text)-24:])
	}
	for _, n := range needles {
		if bytes.Contains(b, []byte(n)) {
			t.Errorf("the sealed file holds %q", n)
		}
	}
	// The needles are spelled as the plaintext spells them.
	plain, err := json.Marshal(sealedFile{Version: SealedVersion, Tokens: v.Tokens, Approval: v.Approval})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{v.Tokens["main"], needles[1], v.Approval.Account, "tokens"} {
		if !bytes.Contains(plain, []byte(n)) {
			t.Errorf("the plaintext does not hold %q", n)
		}
	}
}

func TestVaultWipe(t *testing.T) {
	v := testVault(t)
	secret := v.Approval.Secret
	v.Wipe()
	if v.Tokens != nil || v.Approval != nil {
		t.Errorf("after Wipe: %+v", v)
	}
	if !bytes.Equal(secret, make([]byte, len(secret))) {
		t.Errorf("secret not zeroed: %q", secret)
	}
	(*Vault)(nil).Wipe()
	(&Vault{}).Wipe()
}

func TestApprovalFile(t *testing.T) {
	f := ApprovalFile{Path: ApprovalPath(t.TempDir())}
	if filepath.Base(f.Path) != "approval.json" {
		t.Errorf("ApprovalPath = %s", f.Path)
	}
	if _, err := f.Load(); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no approval record at "+f.Path) {
		t.Errorf("Load of nothing = %v, want ErrNotFound", err)
	}
	want := testVault(t).Approval
	if err := f.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	sameVault(t, &Vault{Approval: got}, &Vault{Approval: want})
	if err := f.Save(nil); err == nil {
		t.Error("Save(nil)")
	}
	for _, bad := range []string{`{"policy":{"uploads":false},"off":true}`, `{`, `{} {}`} {
		if err := os.WriteFile(f.Path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Load(); err == nil || !strings.Contains(err.Error(), f.Path) {
			t.Errorf("Load of %s = %v", bad, err)
		}
	}
}
