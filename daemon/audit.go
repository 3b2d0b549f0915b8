package daemon

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Peer is the process at the other end of a connection, as the kernel
// reports it. Known is false where the system cannot tell.
type Peer struct {
	UID int    `json:"uid"`
	PID int    `json:"pid"`
	Exe string `json:"exe,omitempty"`
	// The caller's parent: for a keyring helper, the tool that ran it (pip,
	// uv, twine's Python).
	PPID      int    `json:"ppid,omitempty"`
	ParentExe string `json:"parent_exe,omitempty"`
	Known     bool   `json:"-"`
}

// auditEntry is one line of the audit log: every mint and every refusal.
// It holds the token id and caveats, never the token or its signature.
type auditEntry struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"` // mint, refuse
	Peer    Peer      `json:"peer"`
	Server  string    `json:"server,omitempty"`
	URL     string    `json:"url,omitempty"`
	Op      string    `json:"op,omitempty"`
	User    string    `json:"user,omitempty"`
	TokenID string    `json:"token_id,omitempty"`
	Caveats []string  `json:"caveats,omitempty"`
	Expires int64     `json:"expires,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Note    string    `json:"note,omitempty"`
}

// auditLog appends JSON lines to a private file, one write per line so
// lines from concurrent mints never interleave.
type auditLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openAudit(path string) (*auditLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &auditLog{path: path, f: f}, nil
}

func (a *auditLog) write(e auditEntry) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	_, err = a.f.Write(line)
	return err
}

func (a *auditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
