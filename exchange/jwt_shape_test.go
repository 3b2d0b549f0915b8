package exchange

import (
	"encoding/base64"
	"encoding/json"
)

// unsignedJWT is a JWT-shaped token whose payload is claims (the client
// reads it unverified; only the exchange verifies).
func unsignedJWT(claims map[string]any) string {
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "RS256"}) + "." + enc(claims) + ".c2ln"
}

// unsignedJWTOf is the JWT-shaped token of a header and payload as they
// are spelled (a shell's printf makes them so).
func unsignedJWTOf(header, payload string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}
