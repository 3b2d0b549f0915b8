//go:build unix

package helper

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/devpi-credd/devpi-credd/localapi"
)

// fzDaemon answers each connection on a Unix socket with the next answer, after reading the request whole, as a daemon would, one at a
// time and in the fuzz run's own time: done is sent before it waits for
// the next connection, so that no coverage of one answer falls into the
// next's (goroutines still running would make the coverage flaky, and
// minimizing an input spin until its time is up).
type fzDaemon struct {
	answer chan []byte
	done   chan struct{}
}

func (d *fzDaemon) serve(l net.Listener) {
	conn, err := l.Accept()
	for err == nil {
		if req, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
			_, _ = io.Copy(io.Discard, req.Body)
		}
		_, _ = conn.Write(<-d.answer)
		conn.Close()
		d.done <- struct{}{}
		conn, err = l.Accept()
	}
}

// fzAnswer is an answer as the daemon's net/http server writes it to an
// HTTP/1.0 request.
func fzAnswer(status int, body string) []byte {
	return []byte("HTTP/1.0 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\nCache-Control: no-store\r\n" +
		"Content-Type: application/json\r\nDate: Tue, 14 Nov 2023 22:13:20 GMT\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// fzStatus reads an answer on its own: a status line "HTTP/x NNN ..."
// and a body after the first blank line.
func fzStatus(answer []byte) (int, []byte, bool) {
	head, body, ok := bytes.Cut(answer, []byte("\r\n\r\n"))
	line, _, _ := bytes.Cut(head, []byte("\r\n"))
	fields := strings.Fields(string(line))
	if !ok || len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/") {
		return 0, nil, false
	}
	status, err := strconv.Atoi(fields[1])
	return status, body, err == nil
}

func fzCap(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// FuzzDaemonAnswer: the lean keyring helper reading the daemon's answer
// (roundTrip's HTTP/1.0 reading, the JSON of the credentials or the
// refusal) and printing what pip and uv read. Whatever the answer: exit 0
// or 1; on 1 nothing on stdout and at most one line on stderr (none for
// not_found); on 0 nothing on stderr, a 200 answer whose body holds a
// password, printed as the keyring protocol's lines (one per field, so a
// field never holds a line break).
func FuzzDaemonAnswer(f *testing.F) {
	dir := f.TempDir()
	sock := filepath.Join(dir, "daemon.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	d := &fzDaemon{answer: make(chan []byte, 1), done: make(chan struct{})}
	go d.serve(l)

	creds := `{"username":"alice","password":"devpi-AgEJbG9jYWxob3N0AhhkZXZwaS1jcmVkZCB0b2tlbiBmb3IgdGVzdA","expires":1700000300,` +
		`"server":"local","token_id":"abcd2345","caveats":["expires=1700000300","allowed=pkg_read","indexes=team/release"]}` + "\n"
	f.Add(fzAnswer(200, creds), byte(0))
	f.Add(fzAnswer(200, creds), byte(1))
	f.Add(fzAnswer(200, creds), byte(2))
	f.Add(fzAnswer(200, `{"username":"alice","password":"devpi-x"}`), byte(3))
	f.Add(fzAnswer(404, `{"error":"no configured server for https://devpi.example/x/","code":"not_found"}`+"\n"), byte(0))
	f.Add(fzAnswer(403, `{"error":"refused:\nthe root token cannot read team/release","code":"refused"}`+"\n"), byte(1))
	f.Add(fzAnswer(503, `{"error":"","code":"unavailable"}`), byte(0))
	f.Add(fzAnswer(429, `not json`), byte(0))
	f.Add(fzAnswer(200, `{}`), byte(0))
	f.Add(fzAnswer(200, `null`), byte(1))
	f.Add(fzAnswer(200, `{"username":"alice","password":"devpi-x\nalice"}`), byte(1))
	f.Add(fzAnswer(200, `{"username":"al\rice","password":"devpi-x"}`), byte(1))
	f.Add(fzAnswer(200, `{"password":"devpi-x"} trailing`), byte(0))
	f.Add(fzAnswer(200, `{"password": 5}`), byte(0))
	f.Add([]byte("HTTP/1.0 +200 OK\r\n\r\n"+`{"password":"devpi-x"}`), byte(0))
	f.Add([]byte("HTTP/1.1 200\r\n\r\n"+`{"password":"devpi-x"}`), byte(0))
	f.Add([]byte("HTTP/1.0 200 OK\n\n"+`{"password":"devpi-x"}`), byte(0))
	f.Add([]byte("SSH-2.0-OpenSSH_9.6\r\n"), byte(0))
	f.Add([]byte(""), byte(0))
	f.Add([]byte("HTTP/1.0 200 OK\r\n"), byte(0))

	modes := [][]string{
		{"get", "https://devpi.example/x/", "bob"},
		{"--mode", "creds", "get", "https://devpi.example/x/"},
		{"--mode=creds", "--output=json", "get", "https://devpi.example/x/"},
		{"--output", "json", "get", "https://devpi.example/x/", "bob"},
	}
	f.Fuzz(func(t *testing.T, answer []byte, mode byte) {
		args := modes[int(mode)%len(modes)]
		d.answer <- answer
		var out, errb bytes.Buffer
		code := Keyring(context.Background(), args, &out, &errb, &Client{Socket: sock}, noTerminal)
		// The client reads up to the daemon's close: each lookup is one
		// connection served whole.
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			t.Fatal("the lookup never reached the daemon")
		}
		stdout, stderr := out.String(), errb.String()
		switch code {
		case KeyringNotFound:
			if stdout != "" {
				t.Fatalf("exit 1 with %q on stdout", stdout)
			}
			if stderr != "" && (strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") ||
				!strings.HasPrefix(stderr, "devpi-credd: no credentials for https://devpi.example/x/: ") &&
					!strings.HasPrefix(stderr, "devpi-credd: an upload to https://devpi.example/x/ needs a one-time code")) {
				t.Fatalf("exit 1 with more than one line on stderr: %q", stderr)
			}
			var e localapi.Error
			if status, body, ok := fzStatus(answer); ok && status != 200 && json.Unmarshal(body, &e) == nil && e.Code == localapi.CodeNotFound && stderr != "" {
				t.Fatalf("not found, yet a line: %q", stderr)
			}
			return
		case KeyringOK:
		default:
			t.Fatalf("exit %d (stderr %q)", code, stderr)
		}
		if stderr != "" {
			t.Fatalf("exit 0 with %q on stderr", stderr)
		}
		status, body, ok := fzStatus(answer)
		if !ok || status != 200 {
			t.Fatalf("exit 0 for an answer that is not 200: %q", fzCap(answer))
		}
		var c localapi.Credentials
		if err := json.Unmarshal(body, &c); err != nil {
			t.Fatalf("exit 0 for an answer that is not the credentials' JSON: %q", fzCap(body))
		}
		if c.Password == "" || strings.ContainsFunc(c.Username+c.Password, unicode.IsControl) {
			t.Fatalf("exit 0 for credentials that are no token: %q", body)
		}
		var want string
		switch int(mode) % len(modes) {
		case 0:
			want = c.Password + "\n"
		case 1:
			want = c.Username + "\n" + c.Password + "\n"
		default:
			var got struct{ Username, Password *string }
			if err := json.Unmarshal(out.Bytes(), &got); err != nil || got.Password == nil || *got.Password != c.Password ||
				(mode%4 == 2) != (got.Username != nil) || (got.Username != nil && *got.Username != c.Username) || strings.Count(stdout, "\n") != 1 {
				t.Fatalf("keyring JSON %q for %q", stdout, body)
			}
			return
		}
		if stdout != want {
			t.Fatalf("printed %q for %q", stdout, body)
		}
	})
}
