// Command trivial prints one line: the cost of starting a Go binary, the
// floor for any helper process pip or uv runs.
package main

import "os"

func main() { _, _ = os.Stdout.WriteString("x\n") }
