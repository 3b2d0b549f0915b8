//go:build !linux

package exchange

import "testing"

// exchangeNames swaps two directories' names (in three renames: only
// Linux has renameat2's RENAME_EXCHANGE).
func exchangeNames(t *testing.T, a, b string) { exchangeNamesRename(t, a, b) }
