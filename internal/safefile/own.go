package safefile

import (
	"fmt"
	"os"
	"runtime"
)

// ReadOwnPrivate is ReadPrivate for a secret that this process alone
// should hold, such as a TLS key: the file must also belong to this user,
// since whoever owns it can read it whatever its mode, and make it
// readable to others. Links are followed, as ReadPrivate follows them
// (Kubernetes secrets, Vault Agent sinks); the checks are of the file
// read, on its descriptor.
func ReadOwnPrivate(path string, max int64) ([]byte, error) {
	return readOwn(path, max, 0)
}

// ReadOwnNoLink is ReadOwnPrivate for a file this program writes itself,
// such as a sealed store: it has no reason to be a link, so a symbolic
// link in its place is refused (on the open, not by a check before it).
func ReadOwnNoLink(path string, max int64) ([]byte, error) {
	return readOwn(path, max, NoFollow)
}

func readOwn(path string, max int64, flag int) ([]byte, error) {
	data, st, err := read(path, max, flag)
	if err != nil {
		return nil, err
	}
	if err := private(path, st); err != nil {
		return nil, err
	}
	if runtime.GOOS != "windows" {
		if uid, ok := OwnerUID(st); ok && uid != os.Getuid() {
			return nil, fmt.Errorf("%s belongs to uid %d, not to this user: give it to this user (chown) or copy it", path, uid)
		}
	}
	return data, nil
}
