package replicate

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/likeness-run/likeness/pkg/provider"
)

// maxTags is the most tags topic-tags returns (number_of_tags 1..50).
const maxTags = 50

// Tags runs the intelligent-utilities/topic-tags text model on text and
// returns up to n tags (lower-case, hyphenated, e.g.
// "consistent-character-generation"). n <= 0 leaves the count to the model
// (5); n above 50 asks for 50. Like Generate it makes one create request,
// polls until the prediction succeeds, and fails with a classified
// *provider.Error.
func (c *Client) Tags(ctx context.Context, text string, n int) ([]string, error) {
	if strings.TrimSpace(text) == "" {
		return nil, c.errorf(provider.Input, "no text to tag")
	}
	in := map[string]any{"text": text}
	if n > 0 {
		in["number_of_tags"] = min(n, maxTags)
	}
	p, err := c.run(ctx, TagsModel, in, true)
	if err != nil {
		return nil, err
	}
	tags, err := ParseTags(p.Output)
	if err != nil {
		return nil, &provider.Error{Class: provider.Transient, Provider: ProviderName, RequestID: p.ID, Message: "topic-tags output: " + err.Error()}
	}
	if n > 0 && len(tags) > n {
		tags = tags[:n]
	}
	return tags, nil
}

// listMarker matches a list bullet or number before a tag: "- ", "* ",
// "#", "1. ", "2) ".
var listMarker = regexp.MustCompile(`^(?:[-*•#]+|\d+[.)])\s*`)

// ParseTags reads topic-tags output: a JSON array of strings, or one string
// holding a JSON array or tags separated by commas or newlines (list
// bullets, numbering, "#" and quotes are stripped). Tags are trimmed, empty
// ones dropped and duplicates removed, keeping the model's order.
func ParseTags(output json.RawMessage) ([]string, error) {
	var raw []string
	var arr []any
	var s string
	switch {
	case json.Unmarshal(output, &arr) == nil && arr != nil:
		for _, v := range arr {
			t, ok := v.(string)
			if !ok {
				return nil, errNotTags
			}
			raw = append(raw, t)
		}
	case json.Unmarshal(output, &s) == nil:
		if inner := strings.TrimSpace(s); strings.HasPrefix(inner, "[") {
			if tags, err := ParseTags(json.RawMessage(inner)); err == nil {
				return tags, nil
			}
		}
		raw = strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == ';' })
	default:
		return nil, errNotTags
	}
	var tags []string
	seen := map[string]bool{}
	for _, t := range raw {
		t = strings.TrimSpace(t)
		t = listMarker.ReplaceAllString(t, "")
		t = strings.Trim(t, " \t\r\"'`")
		if t == "" || seen[t] {
			continue
		}
		seen[t] = true
		tags = append(tags, t)
	}
	if len(tags) == 0 {
		return nil, errNoTags
	}
	return tags, nil
}

type tagsError string

func (e tagsError) Error() string { return string(e) }

const (
	errNotTags tagsError = "not a string or an array of strings"
	errNoTags  tagsError = "no tags"
)
