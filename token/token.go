package token

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"gopkg.in/macaroon.v2"
)

// Prefix marks a devpi token's text form. It is optional on input.
const Prefix = "devpi-"

// IDAlphabet holds the characters devpi-tokens draws token ids from.
const IDAlphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// ErrInvalid is wrapped by every error Parse returns, so callers can tell a
// malformed token from an I/O problem.
var ErrInvalid = errors.New("invalid token")

// Token is a parsed devpi token. Its zero value is not usable; get one from
// Parse or New. A Token is immutable: Derive returns a new one.
type Token struct {
	m    *macaroon.Macaroon
	user string
	id   string
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Parse reads a token's text form, with or without the "devpi-" prefix and
// surrounding white space. It insists on exactly one macaroon with a
// USER-TOKENID identifier and UTF-8 first-party caveats. Its errors never
// contain the input.
func Parse(text string) (*Token, error) {
	text = strings.TrimSpace(text)
	text = strings.TrimPrefix(text, Prefix)
	if text == "" {
		return nil, invalid("empty")
	}
	if strings.ContainsAny(text, " \t\r\n") {
		return nil, invalid("contains white space (more than one token?)")
	}
	raw, err := macaroon.Base64Decode([]byte(text))
	if err != nil {
		return nil, invalid("not base64url text")
	}
	// Macaroon.UnmarshalBinary ignores trailing bytes; Slice does not.
	var ms macaroon.Slice
	if err := ms.UnmarshalBinary(raw); err != nil {
		return nil, invalid("not a macaroon")
	}
	if len(ms) != 1 {
		return nil, invalid("holds %d macaroons, want exactly one", len(ms))
	}
	return fromMacaroon(ms[0])
}

func fromMacaroon(m *macaroon.Macaroon) (*Token, error) {
	user, id, err := splitIdentifier(m.Id())
	if err != nil {
		return nil, err
	}
	for i, c := range m.Caveats() {
		if len(c.VerificationId) > 0 {
			return nil, invalid("caveat %d is a third-party caveat, which devpi does not use", i+1)
		}
		if !utf8.Valid(c.Id) {
			return nil, invalid("caveat %d is not UTF-8 text", i+1)
		}
	}
	return &Token{m: m, user: user, id: id}, nil
}

func splitIdentifier(ident []byte) (user, id string, err error) {
	for _, b := range ident {
		if b < 0x20 || b > 0x7e {
			return "", "", invalid("identifier is not printable ASCII")
		}
	}
	s := string(ident)
	i := strings.LastIndexByte(s, '-')
	if i <= 0 || i == len(s)-1 {
		return "", "", invalid("identifier is not USER-TOKENID")
	}
	return s[:i], s[i+1:], nil
}

// New mints a root token the way devpi-tokens' server does: a V2 macaroon
// with identifier USER-ID, signed with rootKey, carrying caveats. Only a
// server (or a test standing in for one) knows a root key.
func New(rootKey []byte, user, id string, rs ...Restriction) (*Token, error) {
	if user == "" || id == "" || strings.Contains(id, "-") {
		return nil, fmt.Errorf("new token: user and id must be non-empty and the id must not contain '-'")
	}
	m, err := macaroon.New(rootKey, []byte(user+"-"+id), "", macaroon.V2)
	if err != nil {
		return nil, fmt.Errorf("new token: %w", err)
	}
	t := &Token{m: m, user: user, id: id}
	return t.Derive(rs...)
}

// User is the devpi user the token authenticates as.
func (t *Token) User() string { return t.user }

// ID is the server-side token id; deleting it revokes every derived token.
func (t *Token) ID() string { return t.id }

// Caveats returns the token's first-party caveats in order, oldest first.
func (t *Token) Caveats() []string {
	cs := t.m.Caveats()
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c.Id)
	}
	return out
}

// Derive returns a new token with the restrictions added as caveats. The
// receiver is left as it was. Restrictions can only narrow what a token may
// do; the server checks every caveat.
func (t *Token) Derive(rs ...Restriction) (*Token, error) {
	m := t.m.Clone()
	for _, r := range rs {
		if r.key == "" {
			return nil, errors.New("derive: empty restriction")
		}
		if err := m.AddFirstPartyCaveat([]byte(r.Caveat())); err != nil {
			return nil, fmt.Errorf("derive: %w", err)
		}
	}
	return &Token{m: m, user: t.user, id: t.id}, nil
}

// Reveal returns the token's text form, "devpi-" + base64url without padding
// of its binary encoding. It is the one place a token is spelled out: call it
// only where the token must leave the process.
func (t *Token) Reveal() string {
	b, err := t.m.MarshalBinary()
	if err != nil {
		// Parse and New only build V1 or V2 macaroons, which always marshal.
		panic("token: marshal: " + err.Error())
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Signature returns a copy of the macaroon's signature. It is as secret as the
// token: tests use it to prove that nothing leaked.
func (t *Token) Signature() []byte { return append([]byte(nil), t.m.Signature()...) }

// Equal reports whether two tokens are the same macaroon: identifier,
// caveats and signature. Text forms of one token can differ (location
// packet, prefix, padding), so never compare tokens as strings.
func (t *Token) Equal(o *Token) bool {
	if t == nil || o == nil {
		return t == o
	}
	if !bytes.Equal(t.m.Id(), o.m.Id()) || !bytes.Equal(t.m.Signature(), o.m.Signature()) {
		return false
	}
	a, b := t.Caveats(), o.Caveats()
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// String describes the token without revealing it.
func (t *Token) String() string {
	if t == nil {
		return "<nil token>"
	}
	return fmt.Sprintf("devpi token %s-%s (%d caveats, redacted)", t.user, t.id, len(t.m.Caveats()))
}

// GoString keeps %#v from printing the macaroon's fields.
func (t *Token) GoString() string { return t.String() }

// Format makes every fmt verb use String, so %v, %+v, %#v, %s, %q and %x
// cannot reach the secret.
func (t *Token) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(t.String())) }

// LogValue logs the token's user and id only.
func (t *Token) LogValue() slog.Value {
	if t == nil {
		return slog.StringValue("<nil token>")
	}
	return slog.GroupValue(slog.String("user", t.user), slog.String("id", t.id))
}
