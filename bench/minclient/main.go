// Command minclient is the floor for a keyring lookup: it only dials the
// daemon's socket, writes one HTTP request for credentials and reads the
// JSON answer, then prints the password. No checks, no config, no
// protocol: what no real helper can undercut. bench/keyring.sh runs the
// keyring helper beside it.
//
//	minclient SOCKET URL
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	c, err := net.Dial("unix", os.Args[1])
	if err != nil {
		os.Exit(1)
	}
	body, _ := json.Marshal(map[string]string{"url": os.Args[2]})
	fmt.Fprintf(c, "POST /v1/credentials HTTP/1.0\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	answer, _ := io.ReadAll(c)
	_, payload, _ := bytes.Cut(answer, []byte("\r\n\r\n"))
	var creds struct{ Password string }
	if json.Unmarshal(payload, &creds) != nil || creds.Password == "" {
		os.Exit(1)
	}
	fmt.Println(creds.Password)
}
