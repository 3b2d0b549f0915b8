package approval

import (
	"bufio"
	"fmt"
	"io"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"
)

// quietZone is the light margin around the symbol, in modules: the
// standard asks for 4, phone cameras read 2, and 2 keeps an enrolment
// URI's code within 25 rows of a terminal.
const quietZone = 2

// The terminal's colours around the symbol: bright white on black, so
// the code is dark on light on a dark and on a light terminal alike (the
// blocks draw the light modules; where colours are ignored, a dark
// terminal still shows it right).
const (
	qrColours = "\x1b[97;40m"
	qrReset   = "\x1b[0m"
)

// WriteQR writes text as a QR code (medium error correction) for a
// terminal: Unicode half blocks, two rows of modules to a line, with a
// quiet zone of quietZone modules.
func WriteQR(w io.Writer, text string) error {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return fmt.Errorf("encoding the QR code: %w", err)
	}
	bw := bufio.NewWriter(w)
	for _, line := range qrLines(code) {
		bw.WriteString(qrColours + line + qrReset + "\n")
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the QR code: %w", err)
	}
	return nil
}

// qrLines draws code's modules and its quiet zone, the light ones as
// blocks, two rows to a line; below the last row of an odd count is the
// background.
func qrLines(code barcode.Barcode) []string {
	n := code.Bounds().Dx()
	size := n + 2*quietZone
	light := func(x, y int) bool {
		x, y = x-quietZone, y-quietZone
		if x < 0 || y < 0 || x >= n || y >= n {
			return true // the quiet zone
		}
		return !dark(code, x, y)
	}
	var lines []string
	for y := 0; y < size; y += 2 {
		line := make([]rune, 0, size)
		for x := range size {
			top, bottom := light(x, y), y+1 < size && light(x, y+1)
			switch {
			case top && bottom:
				line = append(line, '█')
			case top:
				line = append(line, '▀')
			case bottom:
				line = append(line, '▄')
			default:
				line = append(line, ' ')
			}
		}
		lines = append(lines, string(line))
	}
	return lines
}

// dark reports whether the module at x, y is dark.
func dark(code barcode.Barcode, x, y int) bool {
	r, g, b, _ := code.At(x, y).RGBA()
	return r+g+b < 3*0x8000
}
