//go:build !unix

package helper

// systemDaemon: system mode is Linux's (a systemd unit of its own user).
type systemDaemon struct{}

func theSystemDaemon() systemDaemon { return systemDaemon{} }

func (systemDaemon) use(*Client) {}
