package imagecheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func encode(t *testing.T, format string, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch format {
	case "png":
		err = (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img)
	case "jpeg":
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85})
	case "gif":
		err = gif.Encode(&buf, img, nil)
	default:
		t.Fatalf("unknown format %q", format)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fill returns a w×h image where every pixel is f(x, y).
func fill(w, h int, f func(x, y int) color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.SetNRGBA(x, y, f(x, y))
		}
	}
	return img
}

func uniform(c color.NRGBA) func(x, y int) color.NRGBA {
	return func(int, int) color.NRGBA { return c }
}

// photoLike is a smooth diagonal gradient with a disc and some grain, the
// statistics of a real photo rather than a flat frame. dark scales its
// brightness down (1 = full range).
func photoLike(w, h int, dark float64) *image.NRGBA {
	rng := rand.New(rand.NewPCG(1, 2))
	return fill(w, h, func(x, y int) color.NRGBA {
		v := 255 * float64(x+y) / float64(w+h)
		if dx, dy := x-w/2, y-h/3; dx*dx+dy*dy < w*w/16 {
			v = 255 - v/2 // a face-like disc
		}
		v = dark*v + float64(rng.IntN(5))
		c := uint8(math.Min(255, v))
		return color.NRGBA{c, uint8(float64(c) * 0.8), uint8(float64(c) * 0.6), 255}
	})
}

func TestVerify(t *testing.T) {
	t.Parallel()
	black := color.NRGBA{0, 0, 0, 255}
	rng := rand.New(rand.NewPCG(3, 4))
	noiseOnBlack := fill(200, 200, func(int, int) color.NRGBA {
		v := uint8(rng.IntN(3)) // 0..2: sensor-like noise on a black frame
		return color.NRGBA{v, v, v, 255}
	})
	webp, err := os.ReadFile("testdata/blue-purple-pink.lossy.webp") // from golang.org/x/image/testdata
	if err != nil {
		t.Fatal(err)
	}
	photo := encode(t, "png", photoLike(300, 400, 1))
	truncated := photo[:len(photo)*2/3]

	tests := []struct {
		name string
		data []byte
		want Want
		// failed is the name of the failing check, "" for a pass.
		failed string
	}{
		{"black png", encode(t, "png", fill(256, 256, uniform(black))), Want{}, "not_blank"},
		{"black jpeg", encode(t, "jpeg", fill(256, 256, uniform(black))), Want{}, "not_blank"},
		{"white png", encode(t, "png", fill(256, 256, uniform(color.NRGBA{255, 255, 255, 255}))), Want{}, "not_blank"},
		{"uniform grey", encode(t, "png", fill(64, 64, uniform(color.NRGBA{128, 128, 128, 255}))), Want{}, "not_blank"},
		{"single colour jpeg", encode(t, "jpeg", fill(300, 200, uniform(color.NRGBA{200, 30, 90, 255}))), Want{}, "not_blank"},
		{"fully transparent", encode(t, "png", fill(64, 64, uniform(color.NRGBA{255, 255, 255, 0}))), Want{}, "not_blank"},
		{"tiny noise on black", encode(t, "png", noiseOnBlack), Want{}, "not_blank"},
		{"black gif", encode(t, "gif", fill(64, 64, uniform(black))), Want{}, "not_blank"},
		{"photo-like png", photo, Want{Width: 300, Height: 400, AspectRatio: 0.75}, ""},
		{"photo-like jpeg", encode(t, "jpeg", photoLike(300, 400, 1)), Want{}, ""},
		{"dark photo", encode(t, "png", photoLike(300, 400, 0.12)), Want{}, ""},
		{"dark photo jpeg", encode(t, "jpeg", photoLike(300, 400, 0.08)), Want{}, ""},
		{"webp", webp, Want{Width: 150, Height: 100, AspectRatio: 1.5}, ""},
		{"gif", encode(t, "gif", photoLike(60, 40, 1)), Want{AspectRatio: 1.5}, ""},
		{"width only", photo, Want{Width: 300}, ""},
		{"wrong width", photo, Want{Width: 512}, "size"},
		{"wrong height", photo, Want{Width: 300, Height: 512}, "size"},
		{"wrong aspect", photo, Want{AspectRatio: 1}, "aspect"},
		{"aspect rounded to pixels", encode(t, "png", photoLike(341, 512, 1)), Want{AspectRatio: 2.0 / 3}, ""},
		{"aspect just outside tolerance", encode(t, "png", photoLike(312, 400, 1)), Want{AspectRatio: 0.75}, "aspect"},
		{"aspect inside custom tolerance", encode(t, "png", photoLike(312, 400, 1)), Want{AspectRatio: 0.75, AspectTolerance: 0.05}, ""},
		{"undecodable bytes", []byte("<html>502 Bad Gateway</html>"), Want{}, "decode"},
		{"empty", nil, Want{}, "decode"},
		{"truncated png", truncated, Want{}, "decode"},
		{"png header only", photo[:33], Want{}, "decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Verify(tt.data, tt.want, Default()...)
			var f *Failure
			if err != nil && !errors.As(err, &f) {
				t.Fatalf("Verify = %v (%T), want a *Failure", err, err)
			}
			got := ""
			if f != nil {
				got = f.Check
			}
			if got != tt.failed {
				t.Errorf("Verify = %v, want failed check %q", err, tt.failed)
			}
			if tt.failed == "decode" && !errors.Is(err, ErrUndecodable) {
				t.Errorf("decode failure %v does not match ErrUndecodable", err)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	data := encode(t, "jpeg", photoLike(30, 20, 1))
	o, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	got := struct {
		Format        string
		Width, Height int
		Same          bool
	}{o.Format, o.Width, o.Height, &o.Data[0] == &data[0]}
	want := struct {
		Format        string
		Width, Height int
		Same          bool
	}{"jpeg", 30, 20, true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Decode mismatch (-want +got):\n%s", diff)
	}
}

func TestDecodeRejectsHugeImages(t *testing.T) {
	t.Parallel()
	// A valid PNG header claiming 100000×100000 pixels, no pixel data.
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	ihdr := data[8+8 : 8+8+13] // after the signature and the chunk length+type
	for _, off := range []int{0, 4} {
		ihdr[off], ihdr[off+1], ihdr[off+2], ihdr[off+3] = 0, 1, 0x86, 0xa0 // 100000
	}
	binary.BigEndian.PutUint32(data[8+8+13:], crc32.ChecksumIEEE(data[8+4:8+8+13]))
	if _, _, err := image.DecodeConfig(bytes.NewReader(data)); err != nil {
		t.Fatalf("test header does not parse: %v", err)
	}
	_, err := Decode(data)
	if !errors.Is(err, ErrUndecodable) || !strings.Contains(err.Error(), "too large") {
		t.Errorf("Decode(100000² header) = %v, want ErrUndecodable for a too large image", err)
	}
}

func TestNotBlankThreshold(t *testing.T) {
	t.Parallel()
	o, err := Decode(encode(t, "png", photoLike(100, 100, 0.12)))
	if err != nil {
		t.Fatal(err)
	}
	if err := Run(o, Want{}, NotBlank{}); err != nil {
		t.Errorf("default threshold: %v", err)
	}
	if err := Run(o, Want{}, NotBlank{MinStdDev: 200}); err == nil {
		t.Error("MinStdDev 200: passed, want a failure")
	}
	if err := Run(&Output{Width: 1, Height: 1}, Want{}, NotBlank{}); err == nil {
		t.Error("Output without a decoded image: passed, want a failure")
	}
}

// custom is a caller-defined check, to show the list is pluggable.
type custom struct{ err error }

func (custom) Name() string                { return "custom" }
func (c custom) Check(*Output, Want) error { return c.err }

func TestRunOrderAndCustomChecks(t *testing.T) {
	t.Parallel()
	o, err := Decode(encode(t, "png", fill(8, 8, uniform(color.NRGBA{0, 0, 0, 255}))))
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("watermark found")
	tests := []struct {
		name   string
		checks []Check
		want   *Failure
	}{
		{"no checks", nil, nil},
		{"first failure wins", []Check{Size{}, custom{cause}, NotBlank{}}, &Failure{Check: "custom", Msg: "watermark found", Err: cause}},
		{"passing custom check", []Check{custom{}, Size{}}, nil},
		{"check returning a Failure keeps it", []Check{custom{&Failure{Check: "nsfw", Msg: "flagged"}}}, &Failure{Check: "nsfw", Msg: "flagged"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Run(o, Want{Width: 8}, tt.checks...)
			var got *Failure
			if err != nil && !errors.As(err, &got) {
				t.Fatalf("Run = %v (%T), want a *Failure", err, err)
			}
			if (got == nil) != (tt.want == nil) {
				t.Fatalf("Run = %v, want %v", err, tt.want)
			}
			if got == nil {
				return
			}
			if diff := cmp.Diff(*tt.want, *got, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
				t.Errorf("Run mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseAspect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"1:1", 1, true},
		{"3:4", 0.75, true},
		{"16:9", 16.0 / 9, true},
		{" 2.39:1 ", 2.39, true},
		{"match_input_image", 0, false},
		{"", 0, false},
		{"4", 0, false},
		{"0:1", 0, false},
		{"1:0", 0, false},
		{"-3:4", 0, false},
		{"a:b", 0, false},
		{"NaN:1", 0, false},
		{"Inf:1", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseAspect(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseAspect(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
