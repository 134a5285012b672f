package spec

import (
	"fmt"
	"strings"
)

// MaxIDLen is the longest id (spec name, character, prompt or model id).
const MaxIDLen = 64

// CheckID reports whether s is a valid id. Ids become path segments of
// object keys (runs/<run>/outputs/<character>/<model>/<prompt>/...), so they
// are limited to lowercase letters, digits, '.', '_' and '-', start with a
// letter or digit, are at most MaxIDLen characters long and never contain
// "..": no slashes, spaces, control characters or path traversal.
func CheckID(s string) error {
	const rule = "use lowercase letters, digits, '.', '_' and '-' (ids become storage path segments)"
	switch {
	case s == "":
		return fmt.Errorf("must not be empty")
	case strings.Contains(s, ".."):
		return fmt.Errorf("%q must not contain \"..\"; %s", s, rule)
	case strings.Contains(s, "/") || strings.Contains(s, `\`):
		return fmt.Errorf("%q must not contain a slash; %s", s, rule)
	}
	for _, r := range s {
		if !isIDChar(r) {
			return fmt.Errorf("%q must not contain %q; %s", s, r, rule)
		}
	}
	if len(s) > MaxIDLen {
		return fmt.Errorf("is %d characters long; the maximum is %d", len(s), MaxIDLen)
	}
	if c := s[0]; !isLowerAlnum(rune(c)) {
		return fmt.Errorf("%q must start with a lowercase letter or digit", s)
	}
	return nil
}

func isLowerAlnum(r rune) bool { return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' }

func isIDChar(r rune) bool { return isLowerAlnum(r) || r == '.' || r == '_' || r == '-' }
