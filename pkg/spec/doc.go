// Package spec reads a likeness spec (YAML, version 1), validates it and
// expands it into one generation task per (character × prompt × model ×
// variant).
//
// The spec is the only input a user writes. `likeness submit` and
// `likeness run` call [Load] or [LoadFile] before anything is uploaded or
// enqueued: the YAML is walked as a node tree so every problem is reported as
// "file:line: field.path: message", all problems at once, and a spec that
// fails validation never enqueues a task (the CLI exits with code 2 when the
// error is an [Errors]). Validation covers the shape of the document, ids
// (which become object-key path segments, so they are restricted to a safe
// alphabet), model references and parameters (checked against the model
// registry through [Models]), and reference images (read through an
// [io/fs.FS] confined to the spec's directory and sniffed as PNG, JPEG or
// WebP).
//
// A loaded [Spec] keeps the raw bytes as submitted and each reference
// image's bytes and sha256, so the producer can store the spec and upload the
// references content-addressed without reading any file again. [Spec.Expand]
// then yields the tasks in a stable order with deterministic ids and seeds:
// the same spec always produces the same task ids (so re-enqueueing is
// idempotent) and the same seeds (so outputs are reproducible).
// [RetrySeed] gives the worker a fresh, still deterministic seed when an
// output has to be retried.
//
// The package is pure apart from reading the spec and its references; it
// never fetches https references (they are marked [Reference.Remote]) and
// never talks to a provider.
package spec
