package exchange

import (
	"testing"

	"golang.org/x/sys/unix"
)

// exchangeNames swaps two directories' names in one step, as another uid
// racing the exchange would (renameat2 RENAME_EXCHANGE).
func exchangeNames(t *testing.T, a, b string) {
	t.Helper()
	if err := unix.Renameat2(unix.AT_FDCWD, a, unix.AT_FDCWD, b, unix.RENAME_EXCHANGE); err != nil {
		t.Fatalf("renameat2: %v", err)
	}
}
