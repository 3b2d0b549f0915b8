//go:build !unix

package daemon

// softNoFile: Windows has no descriptor limit to speak of (handles run to
// millions); the exchange gets its most, maxExchangeConns.
func softNoFile() (uint64, error) { return fdReserve + fdsPerExchangeConn*maxExchangeConns, nil }
