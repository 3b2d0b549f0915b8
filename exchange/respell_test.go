package exchange

import (
	"strings"
	"testing"
)

// A token without jti is remembered by what its signature covers; but the
// JWS libraries decode the header and payload leniently (a line break
// anywhere in a part is skipped, spare bits of the last character
// ignored) and verify the signature over the re-encoded parts, so every
// other spelling of one header.payload verifies too: each must be the same
// token, or refused.
func TestTokenWithoutJTIRespelled(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.issuer.Sign(map[string]any{"aud": "devpi", "jti": nil})
	if status, _, codes := f.post(t, tokenBody(tok)); status != 200 {
		t.Fatalf("a token without jti: %d %v", status, codes)
	}
	parts := strings.Split(tok, ".")
	spellings := map[string]string{
		"a line break in the header":  parts[0][:5] + "\n" + parts[0][5:] + "." + parts[1] + "." + parts[2],
		"a line break in the payload": parts[0] + "." + parts[1][:5] + "\r\n" + parts[1][5:] + "." + parts[2],
	}
	for i, p := range parts[:2] {
		if len(p)%4 == 0 {
			continue
		}
		last := p[len(p)-1]
		for _, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
			if byte(c) == last {
				continue
			}
			q := append([]string(nil), parts...)
			q[i] = p[:len(p)-1] + string(c)
			spellings["the last character of part "+string(rune('0'+i))+" as "+string(c)] = strings.Join(q, ".")
		}
	}
	for name, other := range spellings {
		if status, _, codes := f.post(t, tokenBody(other)); status == 200 {
			t.Errorf("%s: minted again (%v)", name, codes)
		}
	}
}
