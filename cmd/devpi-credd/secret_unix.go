//go:build !windows

package main

import (
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/devpi-credd/devpi-credd/helper"
)

// readSecretOnTTY asks on the controlling terminal and reads the answer
// without echo. Without a terminal it fails with helper.ErrNoTerminal.
func readSecretOnTTY(prompt string) (string, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("%w (%v)", helper.ErrNoTerminal, err)
	}
	defer tty.Close()
	fmt.Fprint(tty, prompt)
	b, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	return string(b), err
}
