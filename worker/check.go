package worker

import (
	"context"
	"errors"

	"github.com/likeness-run/likeness/pkg/imagecheck"
	"github.com/likeness-run/likeness/pkg/provider"
	"github.com/likeness-run/likeness/pkg/telemetry"
)

// The output check step: what an output must look like, derived from the
// request, and the checks run on it before it is stored.

// check runs the output checks inside their span.
func (w *Worker) check(ctx context.Context, model provider.Model, data []byte, want imagecheck.Want) (*imagecheck.Output, error) {
	cctx, span := telemetry.Start(ctx, telemetry.SpanCheck)
	out, err := checkOutput(data, want, w.cfg.Checks)
	var pe *provider.Error
	if errors.As(err, &pe) {
		pe.Provider = model.Provider
	}
	var failure *imagecheck.Failure
	if errors.As(err, &failure) {
		w.cfg.Telemetry.Metrics().CheckFailed(cctx, model.Ref, failure.Check)
	}
	telemetry.End(span, err)
	return out, err
}

func checkOutput(data []byte, want imagecheck.Want, checks []imagecheck.Check) (*imagecheck.Output, error) {
	out, err := imagecheck.Decode(data)
	if err == nil {
		err = imagecheck.Run(out, want, checks...)
	}
	if err != nil {
		return nil, &provider.Error{Class: provider.BadOutput, Err: err}
	}
	return out, nil
}

// hostedAspectTolerance is how far a hosted model's output aspect may be
// from the one asked for before the output counts as bad.
const hostedAspectTolerance = 0.08

// expectation derives what the output must look like from the request.
func expectation(m provider.Model, params map[string]any, refW, refH int) imagecheck.Want {
	var want imagecheck.Want
	ar, _ := params["aspect_ratio"].(string)
	if ar == "" || ar == "match_input_image" {
		if p, ok := m.Param("aspect_ratio"); ok && ar == "" {
			ar, _ = p.Default.(string)
		}
	}
	if r, ok := imagecheck.ParseAspect(ar); ok {
		want.AspectRatio = r
	} else if ar == "match_input_image" && refW > 0 && refH > 0 {
		want.AspectRatio = float64(refW) / float64(refH)
	}
	// The simulator renders exact sizes; hosted models choose their own
	// resolution for an aspect ratio (FLUX rounds to multiples of 32, 16:9
	// comes back as 1392×752), so only the ratio is checked there, loosely.
	if m.Provider != "sim" {
		want.AspectTolerance = hostedAspectTolerance
	}
	if m.Provider == "sim" && want.AspectRatio > 0 {
		long := 512
		if v, ok := params["size"].(int); ok {
			long = v
		}
		if want.AspectRatio >= 1 {
			want.Width, want.Height = long, int(float64(long)/want.AspectRatio+0.5)
		} else {
			want.Width, want.Height = int(float64(long)*want.AspectRatio+0.5), long
		}
	}
	return want
}

// editExpectation is what an inpainting output must be. The simulator keeps
// the edited image's frame exactly. Hosted models choose: Ideogram keeps the
// image's frame, gpt-image-1 answers in its size parameter, so only the
// decode and blank checks apply there.
func editExpectation(m provider.Model, imageW, imageH int) imagecheck.Want {
	if m.Provider != "sim" || imageW <= 0 || imageH <= 0 {
		return imagecheck.Want{}
	}
	return imagecheck.Want{Width: imageW, Height: imageH, AspectRatio: float64(imageW) / float64(imageH)}
}
