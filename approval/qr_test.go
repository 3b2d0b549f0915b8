package approval

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/boombuler/barcode/qr"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// stripColours returns WriteQR's lines without their colours, checking
// that each line has them.
func stripColours(t *testing.T, out string) []string {
	t.Helper()
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("output does not end in a newline: %q", out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		inner, ok := strings.CutPrefix(l, qrColours)
		if inner, ok = strings.CutSuffix(inner, qrReset); !ok || strings.ContainsRune(inner, '\x1b') {
			t.Fatalf("line %q is not coloured and reset", l)
		}
		lines = append(lines, inner)
	}
	return lines
}

func TestWriteQRMatrix(t *testing.T) {
	for _, text := range []string{"x", URI(rfcSecret, "devpi-credd", "alice@box"), strings.Repeat("otpauth://", 30)} {
		code, err := qr.Encode(text, qr.M, qr.Auto)
		if err != nil {
			t.Fatal(err)
		}
		n := code.Bounds().Dx()
		var out bytes.Buffer
		if err := WriteQR(&out, text); err != nil {
			t.Fatal(err)
		}
		lines := stripColours(t, out.String())
		size := n + 2*quietZone
		if len(lines) != (size+1)/2 {
			t.Fatalf("%q: %d lines for %d rows of modules", text, len(lines), size)
		}
		// Read the modules back from the half blocks: light is drawn.
		halves := map[rune][2]bool{'█': {true, true}, '▀': {true, false}, '▄': {false, true}, ' ': {false, false}}
		light := make([][]bool, 2*len(lines))
		for y, l := range lines {
			r := []rune(l)
			if len(r) != size {
				t.Fatalf("%q: line %d is %d wide, want %d", text, y, len(r), size)
			}
			light[2*y], light[2*y+1] = make([]bool, size), make([]bool, size)
			for x, c := range r {
				half, ok := halves[c]
				if !ok {
					t.Fatalf("%q: line %d has %q", text, y, c)
				}
				light[2*y][x], light[2*y+1][x] = half[0], half[1]
			}
		}
		for y := range size {
			for x := range size {
				inZone := x < quietZone || y < quietZone || x >= n+quietZone || y >= n+quietZone
				want := inZone || !dark(code, x-quietZone, y-quietZone)
				if light[y][x] != want {
					t.Fatalf("%q: module %d,%d light %v, want %v", text, x, y, light[y][x], want)
				}
			}
		}
		// Below the last row of an odd count is the background.
		if size%2 == 1 {
			for x, on := range light[size] {
				if on {
					t.Fatalf("%q: half row below the symbol drawn at %d", text, x)
				}
			}
		}
		// The finder pattern's corner is dark: the code is not inverted.
		if light[quietZone][quietZone] || !light[quietZone+1][quietZone+1] {
			t.Fatalf("%q: the finder pattern is not dark-light from its corner", text)
		}
	}
}

// The rendering of a known URI does not change unnoticed (a new version
// of the encoder may choose another mask: check such a change with a phone).
func TestWriteQRGolden(t *testing.T) {
	var out bytes.Buffer
	if err := WriteQR(&out, URI(rfcSecret, "devpi-credd", "alice@box")); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "qr.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("WriteQR's output differs from %s (go test -run TestWriteQRGolden -update rewrites it):\n%s", golden, out.String())
	}
}

func TestWriteQRTooLong(t *testing.T) {
	var out bytes.Buffer
	if err := WriteQR(&out, strings.Repeat("x", 3000)); err == nil {
		t.Fatal("a text beyond a QR code's capacity was encoded")
	}
	if out.Len() != 0 {
		t.Fatalf("wrote %d bytes for a failed code", out.Len())
	}
}
