// Package store keeps likeness's blobs: reference images, specs, generated
// images, per-task records and the files the fan-in writes at the end of a
// run.
//
// Two implementations share one key layout (see the *Key functions in this
// package and design.md, "Storage layout") and one conformance suite
// (package storetest):
//
//   - [S3] talks to any S3-compatible service through minio-go. The
//     distributed mode uses it, with every process sharing one bucket.
//   - [Dir] keeps the same keys as files under a local directory. The
//     embedded mode uses it, so `likeness run` works with nothing installed.
//
// How storage fits a run's lifecycle:
//
//   - The producer (`likeness submit`) writes the references under refs/,
//     content-addressed so a resubmitted image is stored once
//     ([S3.PutIfAbsent]), and the spec as submitted under runs/<run>/.
//   - Workers write each output image and then the task's record. A
//     redelivered task finds its stored output with Stat and does not pay
//     for it again.
//   - The fan-in lists the run's records and writes manifest.jsonl, run.json
//     and the HTML report.
//
// Keys are slash-separated, relative and clean: both implementations reject
// a key containing "..", "." or empty segments, a leading slash, a
// backslash, a control character or invalid UTF-8 with an error wrapping
// [ErrInvalidKey]. A missing object is reported with an error wrapping
// [ErrNotExist], which also matches io/fs.ErrNotExist.
package store
