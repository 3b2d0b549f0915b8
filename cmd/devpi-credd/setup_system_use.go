package main

// setup-system's usage, on every system: elsewhere than Linux it only
// says that it is Linux's.
const (
	setupSystemUse   = "setup-system --user NAME [--url ROOT --token-file FILE|-] [--name SERVER] [--json]"
	setupSystemShort = "As root: run the daemon as its own user, serving NAME (system mode, Linux)"
)
