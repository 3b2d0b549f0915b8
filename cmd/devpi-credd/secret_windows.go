package main

import (
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/devpi-credd/devpi-credd/helper"
)

// readSecretOnTTY asks on the console and reads the answer without echo.
// Without a console it fails with helper.ErrNoTerminal.
func readSecretOnTTY(prompt string) (string, error) {
	in, err := os.OpenFile("CONIN$", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("%w (%v)", helper.ErrNoTerminal, err)
	}
	defer in.Close()
	out, err := os.OpenFile("CONOUT$", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("%w (%v)", helper.ErrNoTerminal, err)
	}
	defer out.Close()
	fmt.Fprint(out, prompt)
	b, err := term.ReadPassword(int(in.Fd()))
	fmt.Fprintln(out)
	return string(b), err
}
