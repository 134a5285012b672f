package imagecheck_test

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"

	"github.com/likeness-run/likeness/pkg/imagecheck"
)

// A worker checks each downloaded output against what the request asked
// for; a *Failure means the output is retried with a new seed.
func ExampleVerify() {
	var buf bytes.Buffer
	_ = png.Encode(&buf, image.NewGray(image.Rect(0, 0, 384, 512))) // a black frame
	want := imagecheck.Want{Width: 384, Height: 512}
	want.AspectRatio, _ = imagecheck.ParseAspect("3:4")

	_, err := imagecheck.Verify(buf.Bytes(), want, imagecheck.Default()...)
	var f *imagecheck.Failure
	if errors.As(err, &f) {
		fmt.Println("bad output:", f.Check)
	}
	// Output: bad output: not_blank
}

func ExampleRun() {
	img := image.NewGray(image.Rect(0, 0, 640, 480))
	for i := range img.Pix {
		img.Pix[i] = uint8(i % 251) // anything but flat
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	o, err := imagecheck.Decode(buf.Bytes())
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(o.Format, o.Width, o.Height)
	fmt.Println(imagecheck.Run(o, imagecheck.Want{AspectRatio: 3.0 / 4}, imagecheck.Default()...))
	// Output:
	// png 640 480
	// output check aspect: aspect ratio is 1.333 (640×480), want 0.750±3%
}
