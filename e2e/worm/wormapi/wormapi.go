// Package wormapi is what the e2e tests tell the worm (e2e/worm) to do
// and what it reports back, as JSON: one definition for both sides. The
// worm plays a program running as the developer's uid without the
// person's authenticator; the tests assert on its report.
package wormapi

import (
	"crypto/sha256"
	"encoding/hex"
)

// Plan is the worm's input, a file the test writes and the worm reads.
// It holds no secret: the codes in it are spent or known to be wrong.
type Plan struct {
	// Dir is the worm's own scratch directory (the developer's).
	Dir string `json:"dir"`
	// Roots are the directories under which every readable file is read:
	// $HOME, /tmp, $XDG_RUNTIME_DIR, the config directory and, in system
	// mode, the daemon's own directories.
	Roots []string `json:"roots"`
	// UploadURL is devpi-server's own upload URL of the test's index (no
	// proxy between): every token found is tried there, so a refusal is
	// devpi-server's. Wheel is a wheel of Project at Version to upload.
	UploadURL string `json:"upload_url"`
	Wheel     string `json:"wheel"`
	Project   string `json:"project"`
	Version   string `json:"version"`
	// IndexURL is the same index as the daemon knows it (behind the
	// proxy): what the worm asks the daemon for upload tokens for.
	IndexURL string `json:"index_url"`
	Index    string `json:"index"` // USER/INDEX
	// SimpleURL is the index's read-protected simple page, and Package a
	// package on it that pip installs through the keyring link.
	SimpleURL string `json:"simple_url"`
	Package   string `json:"package"`
	// DaemonPID is the daemon's process; ControlPID a dumpable process of
	// the developer's uid holding a read token in memory only: ptrace,
	// gcore and the memory scan must work on it, or they prove nothing.
	DaemonPID  int `json:"daemon_pid"`
	ControlPID int `json:"control_pid"`
	// Programs: devpi-credd, the lean keyring helper, the keyring CLI of
	// the Python venv with devpi-credd's backend, that venv's python, and
	// gcore.
	Bin       string `json:"bin"`
	Keyring   string `json:"keyring"`
	PyKeyring string `json:"py_keyring"`
	Python    string `json:"python"`
	Gcore     string `json:"gcore"`
	// LinkDir holds the 'keyring' link pip runs (keyring-link).
	LinkDir string `json:"link_dir"`
	// Server is the daemon's name of the server (exec --server, env
	// --server); Socket the daemon's socket for the raw API; User the
	// devpi user.
	Server string `json:"server"`
	Socket string `json:"socket"`
	User   string `json:"user"`
	// Config is the developer's devpi-credd config, which the worm edits.
	Config string `json:"config"`
	// Personal: the daemon runs as the developer (the worm may kill it
	// and start another); else it runs under its own uid (system mode).
	Personal bool `json:"personal"`
	// Spent is the code the person used last; Wrong are codes the test
	// knows to be wrong now.
	Spent string   `json:"spent,omitempty"`
	Wrong []string `json:"wrong,omitempty"`
}

// Report is what one phase of the worm did and saw.
type Report struct {
	Phase string `json:"phase"`
	// Found is every distinct token the worm came across, with where it
	// was seen and what devpi-server said to an upload with it.
	Found []Found `json:"found"`
	// What the scan could read: counts, and the bytes of process memory.
	Files    int   `json:"files"`
	Environs int   `json:"environs"`
	Cmdlines int   `json:"cmdlines"`
	Mems     int   `json:"mems"`
	MemBytes int64 `json:"mem_bytes"`
	// Probes: reading the daemon's memory and environment, ptrace and
	// gcore of the daemon and of the control process, killing the daemon.
	Probes []Probe `json:"probes,omitempty"`
	// Attempts: each way of asking for a token (with no code, a wrong or
	// the spent code), in order.
	Attempts []Attempt `json:"attempts,omitempty"`
	// NewDaemonPID is the daemon the worm started (personal mode), which
	// the test stops.
	NewDaemonPID int `json:"new_daemon_pid,omitempty"`
	// Status is the daemon's status as the worm last saw it, raw JSON.
	Status string `json:"status,omitempty"`
	// Errors are the worm's own failures: the test fails on any.
	Errors []string `json:"errors,omitempty"`
}

// Found is one token and what came of it.
type Found struct {
	// Fingerprint is the first 16 hex digits of the SHA-256 of the
	// token's signature: the test compares it with tokens it knows,
	// without the token in the report.
	Fingerprint string   `json:"fingerprint"`
	User        string   `json:"user"`
	ID          string   `json:"id"`
	Caveats     []string `json:"caveats"`
	Sources     []string `json:"sources"`
	Upload      Upload   `json:"upload"`
}

// Fingerprint names a token by its signature (see Found.Fingerprint).
func Fingerprint(signature []byte) string {
	sum := sha256.Sum256(signature)
	return hex.EncodeToString(sum[:8])
}

// Upload is devpi-server's answer to an upload.
type Upload struct {
	Status int    `json:"status"`
	Body   string `json:"body,omitempty"` // the first of it
	Err    string `json:"err,omitempty"`
}

// Refused: devpi-server answered and said no.
func (u Upload) Refused() bool { return u.Status == 401 || u.Status == 403 }

// Probe is one thing the worm tried against a process.
type Probe struct {
	Name   string `json:"name"` // e.g. "ptrace daemon", "gcore control"
	PID    int    `json:"pid"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Code kinds an attempt carries.
const (
	CodeNone  = "none"
	CodeWrong = "wrong"
	CodeSpent = "spent"
)

// Attempt is one request for a token, through one path.
type Attempt struct {
	Path string `json:"path"` // e.g. "keyring helper", "get --code-stdin", "raw /v1/credentials"
	Code string `json:"code"` // CodeNone, CodeWrong, CodeSpent
	// Exit is the program's exit code, or the HTTP status of a raw call.
	Exit int `json:"exit"`
	// Prompted: the program asked for a code on the worm's terminal.
	Prompted bool `json:"prompted,omitempty"`
	// Said is the first line of what it said (stderr, or the error body).
	Said string `json:"said,omitempty"`
	// Tokens counts the tokens in its output (each is in Found).
	Tokens int `json:"tokens,omitempty"`
}

// Probe returns the report's probe named name.
func (r *Report) Probe(name string) (Probe, bool) {
	for _, p := range r.Probes {
		if p.Name == name {
			return p, true
		}
	}
	return Probe{}, false
}
