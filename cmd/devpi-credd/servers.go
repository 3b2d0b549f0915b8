package main

import (
	"net/url"
	"strings"

	"github.com/devpi-credd/devpi-credd/config"
	"github.com/devpi-credd/devpi-credd/localapi"
)

// server is a configured server as a command sees it.
type server struct{ name, url string }

// pickServer is the one answer to "which server does this command mean"
// (revoke, devpi-login, exec --server): the one named; else the one
// devpi-client uses, when it is among them; else the only one. where says
// whose list it is ("the config", "the daemon").
func (a *app) pickServer(servers []server, name, where string) (int, error) {
	var names []string
	for i, s := range servers {
		if name != "" && s.name == name {
			return i, nil
		}
		names = append(names, s.name)
	}
	if name != "" {
		return 0, usageErrorf("%s has no server %q (it has: %s)", where, name, strings.Join(names, ", "))
	}
	if cd, err := a.clientDir(); err == nil {
		if cur, err := cd.Root(); err == nil && cur != "" {
			for i, s := range servers {
				if sameURL(s.url, cur) {
					return i, nil
				}
			}
		}
	}
	if len(servers) == 1 {
		return 0, nil
	}
	return 0, usageErrorf("which server? pass --server NAME (%s has: %s)", where, strings.Join(names, ", "))
}

func sameURL(a, b string) bool {
	ua, erra := url.Parse(a)
	ub, errb := url.Parse(b)
	return erra == nil && errb == nil && ua.String() == ub.String()
}

// chooseServer picks among the config's servers (see pickServer).
func (a *app) chooseServer(cfg *config.Config, name string) (*config.Server, error) {
	list := make([]server, len(cfg.Servers))
	for i, s := range cfg.Servers {
		list[i] = server{s.Name, s.URL.String()}
	}
	i, err := a.pickServer(list, name, "the config")
	if err != nil {
		return nil, err
	}
	return &cfg.Servers[i], nil
}

// chooseDaemonServer picks among the daemon's servers (see pickServer).
func (a *app) chooseDaemonServer(st *localapi.Status, name string) (*localapi.ServerStatus, error) {
	list := make([]server, len(st.Servers))
	for i, s := range st.Servers {
		list[i] = server{s.Name, s.URL}
	}
	i, err := a.pickServer(list, name, "the daemon")
	if err != nil {
		return nil, err
	}
	return &st.Servers[i], nil
}
