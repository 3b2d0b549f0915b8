package job

import (
	"fmt"
	"strings"
)

// Formats Vars can write.
var Formats = []string{"shell", "dotenv", "github"}

// Var is one variable for a CI system.
type Var struct{ Name, Value string }

// UploadVars are the variables twine and uv publish read, for one upload
// token to one index.
func UploadVars(uploadURL, user, password string) []Var {
	return []Var{
		{"TWINE_USERNAME", user}, {"TWINE_PASSWORD", password}, {"TWINE_REPOSITORY_URL", uploadURL},
		{"UV_PUBLISH_URL", uploadURL}, {"UV_PUBLISH_USERNAME", user}, {"UV_PUBLISH_PASSWORD", password},
	}
}

// FormatVars writes vars as format wants them: "shell", export lines for
// eval, values quoted; "dotenv" and "github" (what $GITHUB_ENV takes),
// KEY=VALUE lines.
func FormatVars(format string, vars []Var) (string, error) {
	var b strings.Builder
	for _, v := range vars {
		switch format {
		case "shell":
			fmt.Fprintf(&b, "export %s=%s\n", v.Name, shellQuote(v.Value))
		case "dotenv", "github":
			if strings.ContainsAny(v.Value, "\n\r") {
				return "", fmt.Errorf("%s holds a line break, which %s cannot carry", v.Name, format)
			}
			fmt.Fprintf(&b, "%s=%s\n", v.Name, v.Value)
		default:
			return "", fmt.Errorf("format %q: use %s", format, strings.Join(Formats, ", "))
		}
	}
	return b.String(), nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
