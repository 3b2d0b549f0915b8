package main

import "testing"

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"expires=123":                       "expires=123",
		"projects=naïve":                    "projects=naïve",
		"x\n    restriction: expires=never": `"x\n    restriction: expires=never"`,
		"colour=\x1b[31mred":                `"colour=\x1b[31mred"`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %s, want %s", in, got, want)
		}
	}
}
