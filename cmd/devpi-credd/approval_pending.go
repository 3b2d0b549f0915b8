package main

import "io"

// writeQR stands in for approval.WriteQR until package approval's QR code
// is merged (issue 16).
// TODO(issue 16): replace with approval.WriteQR and remove this file.
func writeQR(io.Writer, string) error { return nil }
