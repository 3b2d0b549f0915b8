package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/devpi-credd/devpi-credd/approval"
	"github.com/devpi-credd/devpi-credd/internal/safefile"
)

// MaxApprovalFile bounds an approval record: a secret, a name, a policy.
const MaxApprovalFile = 64 << 10

// ApprovalFile is the approval record of a daemon that runs as its own
// user (system mode): plain JSON, private to that user, in its own state
// directory, out of reach of the developers it serves. A personal daemon
// keeps its record in the sealed store instead.
type ApprovalFile struct {
	Path string
}

// ApprovalPath is where a system daemon keeps its approval record, under
// its own state directory.
func ApprovalPath(stateDir string) string { return filepath.Join(stateDir, "approval.json") }

// String says where the record is, for status and messages.
func (f ApprovalFile) String() string { return f.Path }

// Load reads the record; a missing file is ErrNotFound. Like the sealed
// store, it refuses anything but a regular file of this user's that group
// and others can neither read nor write.
func (f ApprovalFile) Load() (*approval.Record, error) {
	b, err := safefile.ReadOwnNoLink(f.Path, MaxApprovalFile)
	if err != nil {
		return nil, readFailed("approval record", f.Path, err)
	}
	defer clear(b)
	var rec approval.Record
	if err := decodeStrict(b, &rec); err != nil {
		return nil, fmt.Errorf("approval record %s: %w", f.Path, err)
	}
	return &rec, nil
}

// Save replaces the record atomically with mode 0600.
func (f ApprovalFile) Save(rec *approval.Record) error {
	if rec == nil {
		return errors.New("saving approval record: no record")
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("saving approval record: %w", err)
	}
	defer clear(b)
	if err := safefile.Write(f.Path, b, 0o600); err != nil {
		return fmt.Errorf("saving approval record: %w", err)
	}
	return nil
}
