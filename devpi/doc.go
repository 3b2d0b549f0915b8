// Package devpi talks to devpi-server's HTTP API (/+api, /+login and the
// devpi-tokens endpoints) and reads and writes devpi-client's state files,
// so that devpi-credd and devpi-client can share one login.
package devpi
