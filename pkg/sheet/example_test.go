package sheet_test

import (
	"fmt"
	"image"

	"github.com/likeness-run/likeness/pkg/sheet"
)

// ExampleRender draws a sheet of one prompt on two models, one of which
// failed, and finds the cells in the result.
func ExampleRender() {
	s := &sheet.Sheet{
		Title:     "mara",
		Reference: image.NewGray(image.Rect(0, 0, 300, 400)),
		Columns:   []string{"kontext", "ideogram"},
		Rows:      []sheet.Row{{Label: "piano", Text: "she is playing the piano"}},
		Cells: [][]sheet.Cell{{
			{Image: image.NewGray(image.Rect(0, 0, 512, 512))},
			{Mark: sheet.MarkFailed, Label: "failed · SAFETY"},
		}},
	}
	img, err := sheet.Render(s)
	if err != nil {
		fmt.Println(err)
		return
	}
	l := s.Layout()
	fmt.Println(img.Bounds().Size(), l.CellRect(0, 1))
	// Output:
	// (788,644) (508,364)-(764,620)
}
