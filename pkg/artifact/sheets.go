package artifact

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"sync"

	"github.com/likeness-run/likeness/pkg/manifest"
	"github.com/likeness-run/likeness/pkg/sheet"
	"github.com/likeness-run/likeness/pkg/spec"
)

// makeSheet draws and stores the sheet of one character, whose sorted
// records are given, and returns its key. models are the columns, in order.
// It holds drawing while it draws and encodes: the image of a sheet is
// large, and one is drawn at a time; its cells are read ahead before, and
// the PNG stored after.
func makeSheet(ctx context.Context, cfg Config, s manifest.Summary, records []manifest.Record, models []string, opt spec.Sheets, thumbs map[string]string, drawing sync.Locker) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the prefetch should the sheet not be drawn
	sh, cells := buildSheet(ctx, cfg.Store, s.Run, records, models, opt, thumbs)
	prefetchCells(ctx, cellSource{cfg.Store, cfg.Cells}, cells, cfg.Workers)
	var buf bytes.Buffer
	drawing.Lock()
	err := sheet.Encode(&buf, sh)
	drawing.Unlock()
	if err != nil {
		return "", err
	}
	key := SheetKey(s.Run, records[0].Character)
	if err := cfg.Store.Put(ctx, key, buf.Bytes(), "image/png"); err != nil {
		return "", fmt.Errorf("store sheet %s: %w", key, err)
	}
	return key, nil
}

// imageGetter is the part of Blobs a sheet needs.
type imageGetter interface {
	Get(ctx context.Context, key string) ([]byte, error)
}

// buildSheet arranges one character's sorted records as a sheet: a row per
// prompt (sorted by id, at most sheet.MaxRows), a column per model (in
// models order) or, with every variant, per model and variant. A cell shows
// the output's thumbnail when thumbs has one (else the output), opened
// only when the sheet is drawn; failed, skipped and missing tasks are
// marked.
//
// It also returns the cells that show an image, in the order Render opens
// them, with the key each opens.
func buildSheet(ctx context.Context, blobs imageGetter, run string, records []manifest.Record, models []string, opt spec.Sheets, thumbs map[string]string) (*sheet.Sheet, []imageCell) {
	character := records[0].Character
	sh := &sheet.Sheet{Title: character, Subtitle: "run " + run}
	open := func(key string) func() (image.Image, error) {
		return func() (image.Image, error) {
			data, err := blobs.Get(ctx, key)
			if err != nil {
				return nil, err
			}
			img, _, err := image.Decode(bytes.NewReader(data))
			return img, err
		}
	}
	if records[0].ReferenceKey != "" {
		key := records[0].ReferenceKey
		if t := thumbs[key]; t != "" {
			key = t
		}
		if img, err := open(key)(); err == nil {
			sh.Reference = img
		}
	}

	type cellKey struct {
		model   string
		variant int
	}
	variants := 1
	byPrompt := make(map[string]map[cellKey]manifest.Record)
	var prompts []string
	texts := make(map[string]string)
	for _, r := range records {
		if !opt.All() && r.Variant != 0 {
			continue
		}
		variants = max(variants, r.Variant+1)
		if byPrompt[r.Prompt] == nil {
			byPrompt[r.Prompt] = make(map[cellKey]manifest.Record)
			prompts = append(prompts, r.Prompt)
			texts[r.Prompt] = r.PromptText
		}
		byPrompt[r.Prompt][cellKey{r.Model, r.Variant}] = r
	}
	if len(prompts) > sheet.MaxRows {
		sh.Note = fmt.Sprintf("%d more prompts are not shown; see the report", len(prompts)-sheet.MaxRows)
		prompts = prompts[:sheet.MaxRows]
	}
	var cols []cellKey
	for _, m := range models {
		if !opt.All() {
			cols = append(cols, cellKey{m, 0})
			sh.Columns = append(sh.Columns, m)
			continue
		}
		for v := range variants {
			cols = append(cols, cellKey{m, v})
			sh.Columns = append(sh.Columns, fmt.Sprintf("%s v%d", m, v))
		}
	}
	var cells []imageCell
	for _, p := range prompts {
		sh.Rows = append(sh.Rows, sheet.Row{Label: p, Text: texts[p]})
		row := make([]sheet.Cell, len(cols))
		for i, ck := range cols {
			r, ok := byPrompt[p][ck]
			switch {
			case !ok:
				row[i] = sheet.Cell{Mark: sheet.MarkMissing, Label: "no record"}
			case r.Status == manifest.Succeeded && r.OutputKey != "":
				key := r.OutputKey
				if t := thumbs[key]; t != "" {
					key = t
				}
				row[i] = sheet.Cell{Open: open(key)}
				cells = append(cells, imageCell{cell: &row[i], key: key, sha: r.SHA256})
			case r.Status == manifest.Failed:
				row[i] = sheet.Cell{Mark: sheet.MarkFailed, Label: label("failed", r.ErrorClass)}
			case r.Status.Skipped():
				why := "budget"
				if r.Status == manifest.SkippedCanceled {
					why = "canceled"
				}
				row[i] = sheet.Cell{Mark: sheet.MarkSkipped, Label: "skipped · " + why}
			default:
				row[i] = sheet.Cell{Mark: sheet.MarkMissing, Label: "no image"}
			}
		}
		sh.Cells = append(sh.Cells, row)
	}
	return sh, cells
}

func label(status, class string) string {
	if class == "" {
		return status
	}
	return status + " · " + class
}

// prefetchWindow is how many cell images a sheet reads ahead of drawing.
const prefetchWindow = 64

// imageCell is a sheet cell that shows the image stored at key, the
// output with the given sha256 or its thumbnail.
type imageCell struct {
	cell     *sheet.Cell
	key, sha string
}

// cellSource reads a cell's image from the packed cells when they hold it,
// else from the store.
type cellSource struct {
	blobs imageGetter
	cells *Cells
}

func (s cellSource) image(ctx context.Context, c imageCell) ([]byte, error) {
	if s.cells != nil && c.sha != "" {
		if data, ok := s.cells.Image(c.sha); ok {
			return data, nil
		}
	}
	return s.blobs.Get(ctx, c.key)
}

// prefetchCells reads the sheet's cell images ahead of Render, workers at
// a time and at most prefetchWindow ahead: Render opens the cells one
// after the other (row by row, the order of cells), and a sheet of 220
// prompts and 4 models waiting on 880 reads in turn would spend most of
// its time waiting on the store. Each cell's Open then takes its
// prefetched image. Reads stop when ctx ends.
func prefetchCells(ctx context.Context, src cellSource, cells []imageCell, workers int) {
	type fetched struct {
		img image.Image
		err error
	}
	if len(cells) == 0 {
		return
	}
	results := make([]chan fetched, len(cells))
	for i := range results {
		results[i] = make(chan fetched, 1)
	}
	window := make(chan struct{}, prefetchWindow)
	for i, c := range cells {
		c.cell.Open = func() (image.Image, error) {
			select {
			case f := <-results[i]:
				<-window
				return f.img, f.err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	go func() {
		sem := make(chan struct{}, max(1, workers))
		for i, c := range cells {
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return
			}
			sem <- struct{}{}
			go func() {
				defer func() { <-sem }()
				var img image.Image
				data, err := src.image(ctx, c)
				if err == nil {
					img, _, err = image.Decode(bytes.NewReader(data))
				}
				results[i] <- fetched{img, err}
			}()
		}
	}()
}
