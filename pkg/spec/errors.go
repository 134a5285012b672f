package spec

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a spec, located by file, line and field path.
type Error struct {
	// File is the spec's name as given to Load, LoadFile or Parse.
	File string
	// Line is 1-based; 0 when the problem concerns the whole file.
	Line int
	// Path is the field path, e.g. "models[2].model"; empty for problems
	// that are not about one field, such as YAML syntax errors.
	Path string
	// Msg says what is wrong and, where it helps, what is allowed.
	Msg string
	// Err is the underlying cause, if any (for example a file-system error
	// reading a reference), for errors.Is.
	Err error
}

// Error formats the problem as "file:line: path: msg".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in a spec, sorted by line. Load, LoadFile
// and Parse return an Errors (and nothing else) when the spec is bad input,
// so callers can tell bad input from other failures with errors.As:
//
//	var bad spec.Errors
//	if errors.As(err, &bad) { os.Exit(2) }
type Errors []*Error

// Error returns one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual problems, so errors.As can also find an
// *Error and errors.Is can see the causes.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sortByLine orders problems by line, keeping the order they were found in
// for problems on the same line.
func (es Errors) sortByLine() {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
}
