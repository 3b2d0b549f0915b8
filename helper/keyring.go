package helper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/devpi-credd/devpi-credd/internal/msg"
	"github.com/devpi-credd/devpi-credd/internal/safeurl"
	"github.com/devpi-credd/devpi-credd/localapi"
)

// Source mints credentials; *Client is the real one.
type Source interface {
	Credentials(ctx context.Context, req localapi.CredentialsRequest) (*localapi.Credentials, error)
}

// Matcher is what a Source may also know without the daemon: whether a
// service belongs to a configured server. Asked only when the daemon
// cannot answer, so that lookups for other services stay silent then too.
type Matcher interface {
	Matches(service string) bool
}

// Exit codes of the keyring protocol, as the keyring CLI uses them.
const (
	KeyringOK       = 0
	KeyringNotFound = 1 // nothing for this service: no output at all
	KeyringUsage    = 2 // argparse's code; pip treats "unrecognized arguments" specially
)

// keyringArgs is a parsed keyring command line.
type keyringArgs struct {
	op, service, username string
	hasUser               bool
	mode, output          string
	listBackends, disable bool
	help                  bool
}

// parseKeyringArgs reads the keyring CLI's arguments the way its argparse
// parser does: options before, between or after the positionals, in both
// "--mode creds" and "--mode=creds" forms.
func parseKeyringArgs(args []string) (keyringArgs, error) {
	k := keyringArgs{mode: "password", output: "plain"}
	var pos []string
	choice := func(name, v string, allowed ...string) (string, error) {
		for _, a := range allowed {
			if v == a {
				return v, nil
			}
		}
		return "", fmt.Errorf("argument %s: invalid choice: '%s' (choose from %s)", name, v, "'"+strings.Join(allowed, "', '")+"'")
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(a, "=")
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		// argparse also takes a short option's value attached: -bNAME.
		if len(a) > 2 && (strings.HasPrefix(a, "-b") || strings.HasPrefix(a, "-p")) && a[1] != '-' {
			continue
		}
		takesValue := map[string]bool{"--mode": true, "--output": true, "-p": true, "--keyring-path": true, "-b": true, "--keyring-backend": true}
		if takesValue[name] && !hasVal {
			if i+1 >= len(args) {
				return k, fmt.Errorf("argument %s: expected one argument", name)
			}
			i++
			val = args[i]
		}
		var err error
		switch name {
		case "--mode":
			k.mode, err = choice("--mode", val, "password", "creds")
		case "--output":
			k.output, err = choice("--output", val, "plain", "json")
		case "-p", "--keyring-path", "-b", "--keyring-backend":
			// Backend selection does not apply: devpi-credd is the backend.
		case "--list-backends":
			k.listBackends = true
		case "--disable":
			k.disable = true
		case "-h", "--help":
			k.help = true
		default:
			return k, fmt.Errorf("unrecognized arguments: %s", a)
		}
		if err != nil {
			return k, err
		}
	}
	if len(pos) > 3 {
		return k, fmt.Errorf("unrecognized arguments: %s", strings.Join(pos[3:], " "))
	}
	if len(pos) > 0 {
		if _, err := choice("operation", pos[0], "get", "set", "del", "diagnose"); err != nil {
			return k, err
		}
		k.op = pos[0]
	}
	if len(pos) > 1 {
		k.service = pos[1]
	}
	if len(pos) > 2 {
		k.username, k.hasUser = pos[2], true
	}
	return k, nil
}

const keyringUsage = `usage: keyring [-h] [-p KEYRING_PATH] [-b KEYRING_BACKEND] [--list-backends] [--disable]
               [--mode {password,creds}] [--output {plain,json}]
               [{get,set,del,diagnose}] [service] [username]

devpi-credd answering as a keyring: 'get' asks the devpi-credd daemon for a
short-lived token for SERVICE (an index URL, host[:port] or scheme://host).
'set' and 'del' are refused: long-lived tokens go in with
'devpi-credd token login'.
`

// Keyring runs the keyring command-line protocol that pip
// (--keyring-provider subprocess) and uv use, with args as they follow the
// program name. It answers from src; what it cannot answer is exit 1 with
// nothing on stdout. It prompts only when the daemon wants a one-time code
// (an upload with approval on), through ap, on the terminal: never on
// stdin or stdout, which are the calling tool's.
func Keyring(ctx context.Context, args []string, stdout, stderr io.Writer, src Source, ap Approver) int {
	k, err := parseKeyringArgs(args)
	if err != nil {
		fmt.Fprint(stderr, keyringUsage[:strings.Index(keyringUsage, "\n\n")+1])
		fmt.Fprintf(stderr, "keyring: error: %s\n", err)
		return KeyringUsage
	}
	switch {
	case k.help:
		fmt.Fprint(stdout, keyringUsage)
		return KeyringOK
	case k.listBackends:
		fmt.Fprintln(stdout, "devpi_credd.DevpiCredd (priority: 9)")
		return KeyringOK
	case k.disable:
		fmt.Fprintln(stderr, "devpi-credd: --disable does not apply: remove the keyring link instead")
		return KeyringNotFound
	}
	switch k.op {
	case "":
		fmt.Fprint(stderr, keyringUsage)
		return KeyringUsage
	case "diagnose":
		fmt.Fprintln(stdout, "devpi-credd keyring helper: answers 'get' from the devpi-credd daemon")
		return KeyringOK
	case "set", "del":
		fmt.Fprintf(stderr, "devpi-credd: keyring %s is not supported: tokens come from the devpi-credd daemon; store a long-lived token with 'devpi-credd token login'\n", k.op)
		return KeyringNotFound
	}
	// As keyring's own check: password mode needs a username.
	if k.service == "" || (k.mode == "password" && !k.hasUser) {
		need := "service and username"
		if k.mode == "creds" {
			need = "service"
		}
		fmt.Fprint(stderr, keyringUsage[:strings.Index(keyringUsage, "\n\n")+1])
		fmt.Fprintf(stderr, "keyring: error: get requires %s\n", need)
		return KeyringUsage
	}
	req := localapi.CredentialsRequest{URL: k.service}
	if k.hasUser {
		req.Username = k.username
	}
	c, err := ap.Credentials(ctx, src, req)
	var nt *NoTerminalError
	if errors.As(err, &nt) {
		fmt.Fprintf(stderr, "devpi-credd: %s\n", nt)
		return KeyringNotFound
	}
	if err != nil {
		// Not ours: silent, so other tools' messages stay clean. Anything
		// else: one line saying why there are no credentials.
		if !IsNotFound(err) && !notOurs(src, k.service, err) {
			fmt.Fprintf(stderr, "devpi-credd: no credentials for %s: %s\n", safeurl.Redact(k.service), msg.OneLine(err.Error()))
		}
		return KeyringNotFound
	}
	switch {
	case k.mode == "creds" && k.output == "json":
		// keyring's JSON, plus the expiry (pip reads only the two keys; our
		// Python backend uses it not to reuse a token about to expire).
		v := map[string]any{"username": c.Username, "password": c.Password}
		if c.Expires != 0 {
			v["expires"] = c.Expires
		}
		writeKeyringJSON(stdout, v)
	case k.output == "json":
		writeKeyringJSON(stdout, map[string]any{"password": c.Password})
	case k.mode == "creds":
		fmt.Fprintf(stdout, "%s\n%s\n", c.Username, c.Password)
	default:
		fmt.Fprintln(stdout, c.Password)
	}
	return KeyringOK
}

// notOurs: the daemon could not say, and the config says the service is
// not ours.
func notOurs(src Source, service string, err error) bool {
	m, ok := src.(Matcher)
	return ok && errors.Is(err, ErrNotRunning) && !m.Matches(service)
}

func writeKeyringJSON(w io.Writer, v map[string]any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "%s\n", b)
}
