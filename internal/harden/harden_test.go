package harden

import (
	"bytes"
	"testing"
)

func TestWipe(t *testing.T) {
	b := []byte("a secret of some length")
	alias := b[2:9]
	Wipe(b)
	if !bytes.Equal(b, make([]byte, len(b))) || !bytes.Equal(alias, make([]byte, len(alias))) {
		t.Errorf("after Wipe: %q", b)
	}
	Wipe(nil)
}
