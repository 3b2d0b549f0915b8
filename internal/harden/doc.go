// Package harden defends a process that holds secrets from the other
// processes of its own user, as ssh-agent and gpg-agent do: no debugger
// attaches, no /proc/PID/mem or environ to read, no core file; and keeps
// secret buffers out of swap and zeroes them after use, as far as Go
// permits. What the system does not allow is reported, never fatal.
package harden
