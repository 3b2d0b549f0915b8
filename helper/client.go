package helper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/devpi-credd/devpi-credd/internal/peercred"
	"github.com/devpi-credd/devpi-credd/localapi"
)

// ErrNotRunning is wrapped when nothing answers on the socket.
var ErrNotRunning = errors.New("devpi-credd daemon is not running")

// APIError is a refusal from the daemon, with its stable code.
type APIError struct {
	Status int
	Code   string
	Msg    string
}

func (e *APIError) Error() string { return e.Msg }

// IsCode reports whether err is the daemon's refusal with code (one of
// localapi's Code constants).
func IsCode(err error, code string) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == code
}

// IsNotFound reports whether the daemon knows no server for the URL.
func IsNotFound(err error) bool {
	return IsCode(err, localapi.CodeNotFound)
}

// Client talks to the daemon. Its zero value is not usable: set Socket.
// Each call is one connection: a helper process makes one call and exits,
// so there is no pool to keep (and no transport to start up).
//
// Before it sends a byte, a client checks whom it reached: the socket's
// directory must be private and its owner's, and the daemon (asked of the
// kernel) must run as this user, root or a uid in TrustUIDs. A daemon of
// another user learns every URL asked for and could hand out anything.
type Client struct {
	Socket string
	// TrustUIDs are other users whose daemon this client may use: one that
	// serves this uid through allow_uids ($DEVPI_CREDD_DAEMON_UID).
	TrustUIDs []int
	// DialTimeout bounds connecting (default 1 s): a daemon that is not
	// running fails at once (no socket, or connection refused); a daemon
	// whose backlog is full (EAGAIN) is tried again until this passes.
	DialTimeout time.Duration
	// Timeout bounds a whole call.
	Timeout time.Duration
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		payload = b
	}
	dt, to := c.DialTimeout, c.Timeout
	if dt == 0 {
		dt = time.Second
	}
	if to == 0 {
		to = 10 * time.Second
	}
	if err := checkSocketDir(c.Socket, c.trusted); err != nil {
		return err
	}
	conn, err := dial(ctx, c.Socket, dt)
	if err != nil {
		if errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("no permission to use the daemon's socket %s (it serves its own user)", c.Socket)
		}
		return fmt.Errorf("%w (nothing answers on %s)", ErrNotRunning, c.Socket)
	}
	defer conn.Close()
	if err := c.checkPeer(conn); err != nil {
		return err
	}
	deadline := time.Now().Add(to)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	status, data, err := roundTrip(conn, method, path, payload)
	if err != nil {
		return fmt.Errorf("asking the daemon on %s: %v", c.Socket, err)
	}
	if status != 200 {
		var e localapi.Error
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("the daemon answered %d", status)
		}
		return &APIError{Status: status, Code: e.Code, Msg: e.Error}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the daemon's answer is not JSON: %v", err)
	}
	return nil
}

// maxAnswer bounds what is read of an answer.
const maxAnswer = 1 << 20

// roundTrip sends one HTTP/1.0 request and reads the whole answer, up to
// the daemon's close. HTTP/1.0 by design: the server then neither keeps
// the connection nor chunks the body, so the answer is the status line,
// the headers and the body up to EOF, which this reads without net/http
// (whose package start-up every keyring lookup, a fresh process, would
// pay; see bench/minclient).
func roundTrip(conn net.Conn, method, path string, payload []byte) (int, []byte, error) {
	req := fmt.Sprintf("%s %s HTTP/1.0\r\nHost: devpi-credd\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", method, path, len(payload))
	if _, err := conn.Write(append([]byte(req), payload...)); err != nil {
		return 0, nil, err
	}
	answer, err := io.ReadAll(io.LimitReader(conn, maxAnswer+1))
	if err != nil {
		return 0, nil, err
	}
	if len(answer) > maxAnswer {
		return 0, nil, errors.New("the answer is too long")
	}
	head, body, ok := bytes.Cut(answer, []byte("\r\n\r\n"))
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	// "HTTP/1.0 200 OK"
	fields := strings.Fields(string(line))
	if !ok || len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/") {
		return 0, nil, errors.New("the answer is not HTTP")
	}
	status, err := strconv.Atoi(fields[1])
	if err != nil {
		return 0, nil, errors.New("the answer has no status")
	}
	return status, body, nil
}

// dial connects to the socket. A full backlog answers EAGAIN at once (a
// busy daemon, or a flood on a shared socket): that is tried again, a few
// milliseconds apart, until timeout.
func dial(ctx context.Context, socket string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := &net.Dialer{}
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		conn, err := d.DialContext(ctx, "unix", socket)
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}

// trusted: this user, root, and the users named in TrustUIDs.
func (c *Client) trusted(uid int) bool {
	return uid == os.Getuid() || uid == 0 || slices.Contains(c.TrustUIDs, uid)
}

// checkPeer asks the kernel who listens at the other end.
func (c *Client) checkPeer(conn net.Conn) error {
	cred, err := peercred.Of(conn)
	switch {
	case errors.Is(err, peercred.ErrUnsupported):
		return nil // Windows: the profile directory is the gate
	case err != nil:
		return fmt.Errorf("refusing the daemon on %s: cannot tell who runs it: %v", c.Socket, err)
	case !c.trusted(cred.UID):
		return fmt.Errorf("refusing the daemon on %s: it runs as uid %d, not as you (uid %d) or root; if you mean to use that user's daemon, set DEVPI_CREDD_DAEMON_UID=%d", c.Socket, cred.UID, os.Getuid(), cred.UID)
	}
	return nil
}

// Credentials asks for a token for req.URL.
func (c *Client) Credentials(ctx context.Context, req localapi.CredentialsRequest) (*localapi.Credentials, error) {
	var out localapi.Credentials
	if err := c.call(ctx, "POST", localapi.PathCredentials, req, &out); err != nil {
		return nil, err
	}
	if err := carriable(&out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ErrNoToken is wrapped when the daemon answers 200 with credentials that
// are not a token.
var ErrNoToken = errors.New("the daemon's answer holds no usable token")

// carriable refuses credentials that the keyring protocol cannot carry:
// no password (a daemon of another version that names the field
// otherwise, or answers null), printed as an empty line with exit 0, would
// stop pip and uv from looking elsewhere; a line break or other control
// character would shift which line pip reads as the password.
func carriable(c *localapi.Credentials) error {
	switch {
	case c.Password == "":
		return fmt.Errorf("%w: it has no password", ErrNoToken)
	case strings.ContainsFunc(c.Username+c.Password, unicode.IsControl):
		return fmt.Errorf("%w: it holds a control character", ErrNoToken)
	}
	return nil
}

// Status asks for the daemon's state.
func (c *Client) Status(ctx context.Context) (*localapi.Status, error) {
	var out localapi.Status
	if err := c.call(ctx, "GET", localapi.PathStatus, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Lock makes the daemon refuse every mint until Unlock.
func (c *Client) Lock(ctx context.Context) (*localapi.Status, error) {
	var out localapi.Status
	if err := c.call(ctx, "POST", localapi.PathLock, struct{}{}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Unlock lets the daemon mint again. passphrase opens a sealed store
// (personal mode); empty, the body is the empty object that a daemon
// without a sealed store (and one from before sealed stores) takes.
func (c *Client) Unlock(ctx context.Context, passphrase string) (*localapi.Status, error) {
	var out localapi.Status
	if err := c.sealing().call(ctx, "POST", localapi.PathUnlock, localapi.UnlockRequest{Passphrase: passphrase}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ApprovalBegin starts enrolling an authenticator: the answer holds the
// otpauth:// URI to show the person, not yet in force.
func (c *Client) ApprovalBegin(ctx context.Context, req localapi.ApprovalBegin) (*localapi.ApprovalEnrollment, error) {
	var out localapi.ApprovalEnrollment
	if err := c.call(ctx, "POST", localapi.PathApprovalBegin, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ApprovalConfirm puts an enrollment in force with a first code of it.
func (c *Client) ApprovalConfirm(ctx context.Context, req localapi.ApprovalConfirm) (*localapi.Status, error) {
	var out localapi.Status
	if err := c.sealing().call(ctx, "POST", localapi.PathApprovalConfirm, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ApprovalOff turns approval off, with a current code.
func (c *Client) ApprovalOff(ctx context.Context, req localapi.ApprovalOff) (*localapi.Status, error) {
	var out localapi.Status
	if err := c.sealing().call(ctx, "POST", localapi.PathApprovalOff, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// sealing is c with room for scrypt in the daemon.
func (c *Client) sealing() *Client {
	s := *c
	s.Timeout = max(s.Timeout, localapi.SealTimeout)
	return &s
}
