package exchange

import (
	"errors"
	"net/url"
	"testing"
)

// The default audience is the host the job's token goes to. Go lower-cases
// "İ" (U+0130) to an ASCII "i", but the host an https request goes to is
// the name's IDNA form, where "İ" is "i̇" (i and a combining dot): a job
// pointed at https://DEVPİ.example (anyone's name) asked for
// devpi.example's audience and sent that token there. A host name that is
// not ASCII gives no default: its xn-- form, or --audience.
func TestDefaultAudienceNotFromAnIDN(t *testing.T) {
	for _, s := range []string{"https://DEVPİ.example", "https://dévpi.example", "https://\u212aey.example"} {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if aud, err := ResolveAudience(u, ""); !errors.Is(err, ErrAudience) {
			t.Errorf("%s: audience %q (%v), want it refused", s, aud, err)
		}
		if aud, err := ResolveAudience(u, "devpi.example"); aud != "devpi.example" || err != nil {
			t.Errorf("%s with --audience: %q %v", s, aud, err)
		}
	}
	u, _ := url.Parse("https://XN--DVPI-BPA.Example.:8443")
	if aud, err := ResolveAudience(u, ""); aud != "xn--dvpi-bpa.example" || err != nil {
		t.Errorf("an xn-- host: %q %v", aud, err)
	}
}
