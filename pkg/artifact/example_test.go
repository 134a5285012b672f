package artifact_test

import (
	"fmt"

	"github.com/likeness-run/likeness/pkg/artifact"
)

// ExampleThumbKey shows where thumbnails and sheets are stored: beside the
// run's outputs, named by the image's sha256 so a stored thumbnail always
// shows the image it is named after.
func ExampleThumbKey() {
	sha := "4d4147d9a6d1c0ffee0123456789abcdef0123456789abcdef0123456789abcd"
	fmt.Println(artifact.ThumbKey("qs-1", "runs/qs-1/outputs/mara/kontext/piano/0.png", sha))
	fmt.Println(artifact.ThumbKey("qs-1", "refs/"+sha+".png", sha))
	fmt.Println(artifact.SheetKey("qs-1", "mara"))
	// Output:
	// runs/qs-1/thumbs/mara/kontext/piano/0-4d4147d9a6d1.jpg
	// runs/qs-1/thumbs/refs/4d4147d9a6d1.jpg
	// runs/qs-1/sheets/mara.png
}
