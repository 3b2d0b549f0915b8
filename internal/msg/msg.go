// Package msg shapes what devpi-credd tells people: every message is one
// line, whatever a server, a parser or the system put into it.
package msg

import "strings"

// OneLine folds s onto one line: runs of white space, newlines included,
// become one space.
func OneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
