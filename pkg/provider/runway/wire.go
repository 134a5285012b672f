package runway

import (
	"fmt"
	"strings"
)

// Ratio maps the neutral aspect_ratio and resolution params (the values of
// the Replicate-hosted runwayml/gen4-image) to Runway's ratio string, the
// output size in pixels:
//
//	aspect  1080p       720p
//	16:9    1920:1080   1280:720
//	9:16    1080:1920   720:1280
//	4:3     1440:1080   960:720
//	3:4     1080:1440   720:960
//	1:1     1080:1080   720:720
//	21:9    2112:912    1680:720
//
// Empty values take the defaults 16:9 and 1080p. Any other aspect ratio
// (9:21, 1:3, 2:3, ...) has no Runway size and is an error, as is a
// resolution other than 720p and 1080p.
func Ratio(aspectRatio, resolution string) (string, error) {
	if aspectRatio == "" {
		aspectRatio = "16:9"
	}
	if resolution == "" {
		resolution = "1080p"
	}
	var sizes [2]string // 1080p, 720p
	switch aspectRatio {
	case "16:9":
		sizes = [2]string{"1920:1080", "1280:720"}
	case "9:16":
		sizes = [2]string{"1080:1920", "720:1280"}
	case "4:3":
		sizes = [2]string{"1440:1080", "960:720"}
	case "3:4":
		sizes = [2]string{"1080:1440", "720:960"}
	case "1:1":
		sizes = [2]string{"1080:1080", "720:720"}
	case "21:9":
		sizes = [2]string{"2112:912", "1680:720"}
	default:
		return "", fmt.Errorf("Runway Gen-4 Image has no output size for aspect ratio %q (allowed: 16:9, 9:16, 4:3, 3:4, 1:1, 21:9)", aspectRatio)
	}
	switch resolution {
	case "1080p":
		return sizes[0], nil
	case "720p":
		return sizes[1], nil
	}
	return "", fmt.Errorf("resolution %q is not offered (allowed: 720p, 1080p)", resolution)
}

// Tag bounds.
const (
	minTagLen = 3
	maxTagLen = 16
)

// Tag derives a Runway reference tag from a character id. Runway's rule:
// 3 to 16 characters, ASCII letters, digits and underscores, starting with
// a letter. The mapping is deterministic:
//
//   - every run of other characters becomes one underscore ("mara-2" ->
//     "mara_2", "Zoë K" -> "Zo_K"), and leading/trailing underscores go;
//   - an id that does not start with a letter gets the prefix "char_"
//     ("7up" -> "char_7up"); an empty result becomes "character";
//   - the result is cut to 16 characters, and one shorter than 3 gets the
//     suffix "_ref" ("al" -> "al_ref").
func Tag(character string) string {
	var b strings.Builder
	pending := false // an underscore is owed before the next kept rune
	for _, r := range character {
		if r < 128 && (isLetter(byte(r)) || isDigit(byte(r))) {
			if pending && b.Len() > 0 {
				b.WriteByte('_')
			}
			pending = false
			b.WriteRune(r)
			continue
		}
		pending = true
	}
	s := b.String()
	switch {
	case s == "":
		s = "character"
	case !isLetter(s[0]):
		s = "char_" + s
	}
	if len(s) > maxTagLen {
		s = strings.TrimRight(s[:maxTagLen], "_")
	}
	if len(s) < minTagLen {
		s += "_ref"
	}
	return s
}

// PromptWithTag makes prompt refer to the reference as @tag, which is how
// Gen-4 Image knows whom the reference shows. Mentions of the raw character
// id ("@mara-2") are rewritten to the tag ("@mara_2"); if the prompt still
// does not mention @tag, " (@tag)" is appended, e.g. "she is playing the
// piano (@mara)".
func PromptWithTag(prompt, character, tag string) string {
	if character != "" && character != tag {
		prompt = replaceMention(prompt, character, tag)
	}
	if mentions(prompt, tag) {
		return prompt
	}
	return strings.TrimRight(prompt, " \t\r\n") + " (@" + tag + ")"
}

// mentions reports whether prompt contains "@name" not followed by another
// tag character (so "@mara" is not found in "@maravilla").
func mentions(prompt, name string) bool {
	return indexMention(prompt, name, 0) >= 0
}

func indexMention(prompt, name string, from int) int {
	needle := "@" + name
	for i := from; i <= len(prompt)-len(needle); {
		j := strings.Index(prompt[i:], needle)
		if j < 0 {
			return -1
		}
		at := i + j
		end := at + len(needle)
		if end == len(prompt) || !isTagByte(prompt[end]) {
			return at
		}
		i = at + 1
	}
	return -1
}

func replaceMention(prompt, name, tag string) string {
	var b strings.Builder
	i := 0
	for {
		at := indexMention(prompt, name, i)
		if at < 0 {
			break
		}
		b.WriteString(prompt[i:at])
		b.WriteString("@" + tag)
		i = at + 1 + len(name)
	}
	b.WriteString(prompt[i:])
	return b.String()
}

func isLetter(c byte) bool  { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isDigit(c byte) bool   { return c >= '0' && c <= '9' }
func isTagByte(c byte) bool { return isLetter(c) || isDigit(c) || c == '_' }
