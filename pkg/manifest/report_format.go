package manifest

import (
	"fmt"
	"math"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// relKey returns the path of object key relative to the directory fromDir,
// both slash-separated keys from the bucket root: relKey("runs/r/report",
// "refs/x.png") is "../../../refs/x.png".
func relKey(fromDir, key string) string {
	from := splitKey(fromDir)
	to := splitKey(key)
	common := 0
	for common < len(from) && common < len(to) && from[common] == to[common] {
		common++
	}
	parts := make([]string, 0, len(from)-common+len(to)-common)
	for range from[common:] {
		parts = append(parts, "..")
	}
	parts = append(parts, to[common:]...)
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}

func splitKey(k string) []string {
	k = path.Clean("/" + k)[1:]
	if k == "" {
		return nil
	}
	return strings.Split(k, "/")
}

// relURL is relKey as a URL path: each segment percent-escaped, so a key
// element holding '#', '?' or '%' still names the file.
func relURL(fromDir, key string) string {
	parts := strings.Split(relKey(fromDir, key), "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// formatUSD prints a dollar amount with at least two decimals and at most
// four: $0.04, $0.0035, $12.50.
func formatUSD(v float64) string {
	s := strconv.FormatFloat(roundTo(v, 4), 'f', -1, 64)
	if i := strings.IndexByte(s, '.'); i < 0 {
		s += ".00"
	} else if len(s)-i-1 < 2 {
		s += strings.Repeat("0", 2-(len(s)-i-1))
	}
	return "$" + s
}

func roundTo(v float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(v*p) / p
}

// formatMS prints a latency: 850 ms, 12.3 s, 2m 05s.
func formatMS(ms int64) string {
	switch {
	case ms <= 0:
		return "–"
	case ms < 1000:
		return fmt.Sprintf("%d ms", ms)
	case ms < 60_000:
		return fmt.Sprintf("%.1f s", float64(ms)/1000)
	default:
		d := time.Duration(ms) * time.Millisecond
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
}

// formatWall prints a run's wall time in seconds: 42.0 s, 3m 07s, 2h 03m.
func formatWall(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case s <= 0:
		return "–"
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", s)
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

func formatPct(rate float64) string { return fmt.Sprintf("%.0f%%", rate*100) }

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// share is n as a percentage of total, for bar widths.
func share(n, total int) float64 {
	if total <= 0 {
		return 0
	}
	return roundTo(float64(n)*100/float64(total), 2)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// statusClass maps a status to a CSS class name from a fixed set.
func statusClass(s Status) string {
	switch {
	case s == Succeeded:
		return "ok"
	case s == Failed:
		return "failed"
	case s.Skipped():
		return "skipped"
	default:
		return "unknown"
	}
}

// statusLabel is a status as a reader would say it.
func statusLabel(s Status) string {
	switch s {
	case SkippedBudget:
		return "skipped · budget"
	case SkippedCanceled:
		return "skipped · canceled"
	case "":
		return "no status"
	default:
		return string(s)
	}
}
