package export

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/likeness-run/likeness/pkg/manifest"
)

// tarBlock is the tar format's unit: headers and padded contents.
const tarBlock = 512

// member is one record's pair of files in a shard.
type member struct {
	r         manifest.Record
	imageSize int64
	json      []byte
}

func (m member) key() string       { return m.r.Task }
func (m member) imageName() string { return m.key() + "." + ext(m.r) }
func (m member) jsonName() string  { return m.key() + ".json" }

// tarSize is what a file of n bytes takes in a tar: a header block and the
// content padded to whole blocks.
func tarSize(n int64) int64 { return tarBlock + (n+tarBlock-1)/tarBlock*tarBlock }

// ShardName is the name of shard i.
func ShardName(i int) string { return fmt.Sprintf("shard-%06d.tar", i) }

// plan splits the records into shards of at most ShardBytes, in order.
func (w *writer) plan(ctx context.Context, records []manifest.Record) ([][]member, error) {
	var shards [][]member
	var cur []member
	size := int64(2 * tarBlock) // the end-of-archive blocks
	for _, r := range records {
		js, err := encodeLine(metadataOf(r, ""))
		if err != nil {
			return nil, fmt.Errorf("encode metadata of task %s: %w", r.Task, err)
		}
		m := member{r: r, imageSize: r.Bytes, json: js}
		if m.imageSize <= 0 { // an old record without its size
			data, err := w.image(ctx, r)
			if err != nil {
				return nil, err
			}
			m.imageSize = int64(len(data))
		}
		add := tarSize(m.imageSize) + tarSize(int64(len(js)))
		if len(cur) > 0 && size+add > w.opts.ShardBytes {
			shards = append(shards, cur)
			cur, size = nil, 2*tarBlock
		}
		cur = append(cur, m)
		size += add
	}
	if len(cur) > 0 {
		shards = append(shards, cur)
	}
	return shards, nil
}

// webDataset writes the shards one at a time, keeping each whose content
// already matches.
func (w *writer) webDataset(ctx context.Context, records []manifest.Record) error {
	shards, err := w.plan(ctx, records)
	if err != nil {
		return err
	}
	for i, members := range shards {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := ShardName(i)
		w.res.Files = append(w.res.Files, name)
		ok, err := w.shardMatches(ctx, name, members)
		if err != nil {
			return err
		}
		if ok {
			w.count(false)
			continue
		}
		if err := w.writeShard(ctx, name, members); err != nil {
			return err
		}
		w.count(true)
	}
	return nil
}

// shardMatches reads an existing shard and reports whether it holds
// exactly members: the same names and sizes in order, every image with its
// record's sha256, every JSON member byte for byte, and nothing more.
func (w *writer) shardMatches(ctx context.Context, name string, members []member) (bool, error) {
	f, err := w.dst.Open(ctx, name)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, dstErr("read %s: %w", w.dst.Location(name), err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	next := func(wantName string, wantSize int64) bool {
		h, err := tr.Next()
		return err == nil && h.Name == wantName && h.Size == wantSize && h.Typeflag == tar.TypeReg
	}
	for _, m := range members {
		if m.r.SHA256 == "" || !next(m.imageName(), m.imageSize) {
			return false, nil
		}
		h := sha256.New()
		if _, err := io.Copy(h, tr); err != nil || hex.EncodeToString(h.Sum(nil)) != m.r.SHA256 {
			return false, nil
		}
		if !next(m.jsonName(), int64(len(m.json))) {
			return false, nil
		}
		got, err := io.ReadAll(tr)
		if err != nil || !bytes.Equal(got, m.json) {
			return false, nil
		}
	}
	_, err = tr.Next()
	return errors.Is(err, io.EOF), nil
}

// writeShard writes a shard from the source's images.
func (w *writer) writeShard(ctx context.Context, name string, members []member) error {
	f, err := w.dst.Create(ctx, name)
	if err != nil {
		return dstErr("write %s: %w", w.dst.Location(name), err)
	}
	tw := tar.NewWriter(f)
	put := func(file string, data []byte, mtime time.Time) error {
		h := &tar.Header{Name: file, Mode: 0o644, Size: int64(len(data)), ModTime: mtime, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(h); err != nil {
			return dstErr("write %s: %s: %w", w.dst.Location(name), file, err)
		}
		if _, err := tw.Write(data); err != nil {
			return dstErr("write %s: %s: %w", w.dst.Location(name), file, err)
		}
		return nil
	}
	images := w.prefetch(ctx, members)
	defer images.stop()
	for i, m := range members {
		data, err := images.get(ctx, i)
		if err == nil && int64(len(data)) != m.imageSize {
			err = srcErr("output %s of task %s is %d bytes; its record says %d", m.r.OutputKey, m.r.Task, len(data), m.imageSize)
		}
		// Member times are the task's finish, so a shard's bytes depend
		// only on its records.
		mtime := m.r.FinishedAt.UTC().Truncate(time.Second)
		if mtime.Before(time.Unix(0, 0)) {
			mtime = time.Unix(0, 0)
		}
		if err == nil {
			err = put(m.imageName(), data, mtime)
		}
		if err == nil {
			err = put(m.jsonName(), m.json, mtime)
		}
		if err != nil {
			f.Abort()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Abort()
		return dstErr("write %s: %w", w.dst.Location(name), err)
	}
	if err := f.Commit(); err != nil {
		return dstErr("write %s: %w", w.dst.Location(name), err)
	}
	return nil
}

// prefetched reads a shard's images ahead of the writer, at most Workers
// at a time, and hands them over in order.
type prefetched struct {
	results []chan fetched
	sem     chan struct{}
	cancel  context.CancelFunc
}

type fetched struct {
	data []byte
	err  error
}

// prefetch starts reading members' images. Call stop when done.
func (w *writer) prefetch(ctx context.Context, members []member) *prefetched {
	ctx, cancel := context.WithCancel(ctx)
	p := &prefetched{results: make([]chan fetched, len(members)), sem: make(chan struct{}, w.opts.Workers), cancel: cancel}
	for i := range p.results {
		p.results[i] = make(chan fetched, 1) // fetchers never block on send
	}
	go func() {
		for i, m := range members {
			select {
			case p.sem <- struct{}{}: // released by get
			case <-ctx.Done():
				return
			}
			go func() {
				data, err := w.image(ctx, m.r)
				p.results[i] <- fetched{data, err}
			}()
		}
	}()
	return p
}

// get waits for image i; images are taken in order.
func (p *prefetched) get(ctx context.Context, i int) ([]byte, error) {
	select {
	case r := <-p.results[i]:
		<-p.sem
		return r.data, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *prefetched) stop() { p.cancel() }
