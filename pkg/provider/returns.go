package provider

import (
	"fmt"
	"strings"
)

// Returns says what a model's outputs look like and what the worker's
// output checks hold them to, from its parameters: the aspect ratios and
// sizes it can be asked for, what it does when not asked, and its
// encodings. A spec that asks for something a model does not return is
// refused when it is parsed; an output that does not match what was asked
// fails a check, and two outputs failing the same size or aspect check end
// the task (every seed would be paid for and rejected alike).
func (m Model) Returns() string {
	var parts []string
	if p, ok := m.Param("aspect_ratio"); ok {
		s := "aspect ratio "
		if len(p.Enum) > 0 {
			s += strings.Join(p.Enum, ", ")
		} else {
			s += "as asked"
		}
		switch d := fmt.Sprint(p.Default); {
		case p.Default == nil:
			s += " (unset: the size parameter decides)"
		case d == "match_input_image":
			s += " (default: the reference's)"
		default:
			s += " (default " + d + ")"
		}
		parts = append(parts, s)
	}
	for _, name := range []string{"resolution", "size"} {
		if p, ok := m.Param(name); ok && len(p.Enum) > 0 {
			parts = append(parts, name+" "+strings.Join(p.Enum, ", "))
		}
	}
	if p, ok := m.Param("output_format"); ok && len(p.Enum) > 0 {
		parts = append(parts, "encoded as "+strings.Join(p.Enum, ", "))
	}
	if m.Provider == "sim" {
		parts = append(parts, "exactly the size asked (long side = size, default 512); checked to the pixel")
	} else {
		parts = append(parts, "the pixel size is the provider's choice for the aspect; checked: the aspect, within 8%")
	}
	if m.Inpainting {
		parts = append(parts, "an inpainting edit keeps the edited image's frame or follows the size parameter")
	}
	return strings.Join(parts, "; ")
}
