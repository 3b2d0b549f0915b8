package approval

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// The one kind of code the daemon checks: what every authenticator app
// does by default (Google Authenticator ignores anything else).
const (
	// Period is the life of one code, the TOTP time step.
	Period = 30 * time.Second
	// Digits is the length of a code.
	Digits = 6
	// SecretSize is the length of a new secret: HMAC-SHA1's block of 160
	// bits, RFC 4226's recommendation.
	SecretSize = 20
	// minSecretSize is RFC 4226's floor (128 bits); a shorter secret in a
	// URI is refused.
	minSecretSize = 16
	// DefaultIssuer names the app's entry when URI is given no issuer.
	DefaultIssuer = "devpi-credd"
)

// ErrBadURI is wrapped by every ParseURI error.
var ErrBadURI = errors.New("not an otpauth://totp URI with a SHA1, 6-digit, 30-second code")

// b32 is the alphabet of otpauth URIs: RFC 4648 base32, no padding.
var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Code is the code of secret at t: RFC 6238 with HMAC-SHA1, 6 digits, 30 s.
func Code(secret []byte, t time.Time) string {
	code, err := totp.GenerateCodeCustom(b32.EncodeToString(secret), t, totp.ValidateOpts{
		Period:    uint(Period / time.Second),
		Digits:    otp.DigitsSix,
		Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		// Only a secret that is not base32 fails, and ours is encoded
		// just above: never reached. An empty code matches nothing.
		return ""
	}
	return code
}

// NewSecret returns a new random secret of SecretSize bytes.
func NewSecret() ([]byte, error) {
	b := make([]byte, SecretSize)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("reading random bytes for a new secret: %w", err)
	}
	return b, nil
}

// URI is what an authenticator app scans to enrol secret:
// otpauth://totp/ISSUER:ACCOUNT?algorithm=SHA1&digits=6&issuer=ISSUER&period=30&secret=BASE32.
// An empty issuer is DefaultIssuer, an empty account the issuer. An empty
// secret has no URI: it returns "" (the library would make up a random
// secret nobody holds).
func URI(secret []byte, issuer, account string) string {
	if len(secret) == 0 {
		return ""
	}
	if issuer == "" {
		issuer = DefaultIssuer
	}
	if account == "" {
		account = issuer
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      uint(Period / time.Second),
		Secret:      secret,
		Digits:      otp.DigitsSix,
		Algorithm:   otp.AlgorithmSHA1,
	})
	if err != nil {
		// It fails only for an empty issuer or account, filled in above,
		// or for random bytes, which a given secret does not need.
		return ""
	}
	return key.String()
}

// ParseURI returns the secret of an otpauth://totp URI. It refuses a URI
// whose codes Code would not compute: another type, algorithm, length or
// period (absent parameters are the defaults, which are Code's), or a
// secret shorter than 128 bits. The error never contains the secret.
func ParseURI(uri string) ([]byte, error) {
	// otp.Key's getters would read an unknown algorithm as SHA1 and a
	// second digits parameter not at all: the query is checked here.
	u, err := url.Parse(strings.TrimSpace(uri))
	if err != nil {
		// url's errors quote the input, and the input holds the secret.
		return nil, fmt.Errorf("%w: it does not parse as a URL", ErrBadURI)
	}
	if u.Scheme != "otpauth" || !strings.EqualFold(u.Host, "totp") || u.Opaque != "" {
		return nil, fmt.Errorf("%w: it must start with otpauth://totp/", ErrBadURI)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: its query does not parse", ErrBadURI)
	}
	for name, want := range map[string]string{"algorithm": "SHA1", "digits": "6", "period": "30"} {
		switch v := q[name]; {
		case len(v) == 0:
		case len(v) > 1:
			return nil, fmt.Errorf("%w: %s is given twice", ErrBadURI, name)
		case !strings.EqualFold(v[0], want):
			return nil, fmt.Errorf("%w: %s=%.8q, only %s is supported", ErrBadURI, name, v[0], want)
		}
	}
	if v := q["encoder"]; len(v) > 0 {
		return nil, fmt.Errorf("%w: encoder is not supported", ErrBadURI)
	}
	s := q["secret"]
	if len(s) != 1 {
		return nil, fmt.Errorf("%w: it needs exactly one secret parameter", ErrBadURI)
	}
	// Apps write the secret in either case, some padded.
	secret, err := b32.DecodeString(strings.ToUpper(strings.TrimRight(s[0], "=")))
	if err != nil {
		return nil, fmt.Errorf("%w: its secret is not base32", ErrBadURI)
	}
	if len(secret) < minSecretSize {
		return nil, fmt.Errorf("%w: its secret is %d bytes, at least %d are needed", ErrBadURI, len(secret), minSecretSize)
	}
	return secret, nil
}
