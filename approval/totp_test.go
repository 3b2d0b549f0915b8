package approval

import (
	"bytes"
	"encoding/base32"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// rfcSecret is RFC 6238 Appendix B's SHA1 seed, b32Secret its base32.
var rfcSecret = []byte("12345678901234567890")

const b32Secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

// RFC 6238 Appendix B, the SHA1 rows: 8-digit codes.
var rfcVectors = []struct {
	unix int64
	code string
}{
	{59, "94287082"},
	{1111111109, "07081804"},
	{1111111111, "14050471"},
	{1234567890, "89005924"},
	{2000000000, "69279037"},
	{20000000000, "65353130"},
}

func TestCodeRFC6238(t *testing.T) {
	for _, v := range rfcVectors {
		at := time.Unix(v.unix, 0)
		// The library with 8 digits gives the RFC's codes exactly...
		eight, err := totp.GenerateCodeCustom(base32.StdEncoding.EncodeToString(rfcSecret), at, totp.ValidateOpts{
			Period: 30, Digits: otp.DigitsEight, Algorithm: otp.AlgorithmSHA1,
		})
		if err != nil || eight != v.code {
			t.Errorf("8 digits at %d: %q, %v; want %q", v.unix, eight, err, v.code)
		}
		// ...and Code's 6 are the same number modulo 10^6: its last 6.
		if got, want := Code(rfcSecret, at), v.code[2:]; got != want {
			t.Errorf("Code at %d = %q, want %q", v.unix, got, want)
		}
		// Every second of a step has the step's code.
		if got, want := Code(rfcSecret, timeOf(stepOf(at))), Code(rfcSecret, at); got != want {
			t.Errorf("start of the step of %d: %q, want %q", v.unix, got, want)
		}
	}
}

func TestNewSecret(t *testing.T) {
	a, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != SecretSize || len(b) != SecretSize {
		t.Fatalf("lengths %d, %d; want %d", len(a), len(b), SecretSize)
	}
	if bytes.Equal(a, b) {
		t.Fatal("two new secrets are equal")
	}
}

func TestURI(t *testing.T) {
	for _, c := range []struct {
		issuer, account, want string
	}{
		{"devpi-credd", "alice@box",
			"otpauth://totp/devpi-credd:alice@box?algorithm=SHA1&digits=6&issuer=devpi-credd&period=30&secret=" + b32Secret},
		{"", "", "otpauth://totp/devpi-credd:devpi-credd?algorithm=SHA1&digits=6&issuer=devpi-credd&period=30&secret=" + b32Secret},
		{"My Org", "bob smith",
			"otpauth://totp/My%20Org:bob%20smith?algorithm=SHA1&digits=6&issuer=My%20Org&period=30&secret=" + b32Secret},
	} {
		got := URI(rfcSecret, c.issuer, c.account)
		if got != c.want {
			t.Errorf("URI(%q, %q) = %q\nwant %q", c.issuer, c.account, got, c.want)
		}
		secret, err := ParseURI(got)
		if err != nil || !bytes.Equal(secret, rfcSecret) {
			t.Errorf("ParseURI(URI(%q, %q)) = %x, %v", c.issuer, c.account, secret, err)
		}
	}
	if got := URI(nil, "i", "a"); got != "" {
		t.Errorf("URI of no secret = %q, want \"\"", got)
	}
	fresh, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseURI(URI(fresh, "devpi-credd", "alice"))
	if err != nil || !bytes.Equal(back, fresh) {
		t.Fatalf("round trip of a new secret: %x, %v", back, err)
	}
}

func TestParseURI(t *testing.T) {
	good := []string{
		"otpauth://totp/devpi-credd:alice?secret=" + b32Secret + "&issuer=devpi-credd",
		"otpauth://totp/alice?secret=" + strings.ToLower(b32Secret),
		"otpauth://totp/x?secret=" + b32Secret + "&algorithm=sha1&digits=6&period=30",
		" otpauth://totp/x?secret=" + b32Secret + "\n",
		"OTPAUTH://totp/x?secret=" + b32Secret,
		"otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQ===", // padded: 18 bytes
	}
	for _, uri := range good {
		secret, err := ParseURI(uri)
		if err != nil {
			t.Errorf("ParseURI(%q): %v", uri, err)
			continue
		}
		if !bytes.HasPrefix(rfcSecret, secret) {
			t.Errorf("ParseURI(%q) = %x, not a prefix of %x", uri, secret, rfcSecret)
		}
	}
	bad := []string{
		"",
		"otpauth://hotp/x?secret=" + b32Secret + "&counter=1",
		"otpauth:totp?secret=" + b32Secret,
		"https://totp/x?secret=" + b32Secret,
		"otpauth://totp/x?secret=" + b32Secret + "&algorithm=SHA256",
		"otpauth://totp/x?secret=" + b32Secret + "&algorithm=MD5",
		"otpauth://totp/x?secret=" + b32Secret + "&algorithm=",
		"otpauth://totp/x?secret=" + b32Secret + "&digits=8",
		"otpauth://totp/x?secret=" + b32Secret + "&digits=6&digits=8",
		"otpauth://totp/x?secret=" + b32Secret + "&period=60",
		"otpauth://totp/x?secret=" + b32Secret + "&encoder=steam",
		"otpauth://totp/x?issuer=devpi-credd",
		"otpauth://totp/x?secret=",
		"otpauth://totp/x?secret=" + b32Secret + "&secret=" + b32Secret,
		"otpauth://totp/x?secret=" + b32Secret[:len(b32Secret)-1] + "1", // 1 is not base32
		"otpauth://totp/x?secret=" + b32Secret[:25],                     // not a whole number of bytes
		"otpauth://totp/x?secret=JBSWY3DPEHPK3PXP",                      // 10 bytes: under 128 bits
		"otpauth://totp/x?secret=" + b32Secret + "&digits=%zz",
		"otpauth://totp/x\x7f?secret=" + b32Secret,
	}
	for _, uri := range bad {
		secret, err := ParseURI(uri)
		if !errors.Is(err, ErrBadURI) {
			t.Errorf("ParseURI(%q) = %x, %v; want ErrBadURI", uri, secret, err)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, b32Secret[:16]) || strings.Contains(msg, "\n") {
			t.Errorf("ParseURI(%q): message shows the secret or is not one line: %q", uri, msg)
		}
	}
}

// FuzzParseURI: ParseURI never panics, and what it accepts is a secret
// whose URI gives it back.
func FuzzParseURI(f *testing.F) {
	f.Add(URI(rfcSecret, "devpi-credd", "alice"))
	f.Add("otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQ===&digits=6&period=30")
	f.Add("otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP")
	f.Add("otpauth://totp/x?secret=" + "A%41" + strings.Repeat("A", 30))
	f.Fuzz(func(t *testing.T, uri string) {
		secret, err := ParseURI(uri)
		if err != nil {
			if !errors.Is(err, ErrBadURI) {
				t.Fatalf("error does not wrap ErrBadURI: %v", err)
			}
			return
		}
		if len(secret) < minSecretSize {
			t.Fatalf("accepted a %d-byte secret", len(secret))
		}
		again, err := ParseURI(URI(secret, "i", "a"))
		if err != nil || !bytes.Equal(again, secret) {
			t.Fatalf("round trip: %x, %v; want %x", again, err, secret)
		}
	})
}
