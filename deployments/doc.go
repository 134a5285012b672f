// Package deployments holds what it takes to run likeness somewhere other
// than a laptop: the container image (Dockerfile), Kubernetes manifests for
// the worker (kubernetes/), the Prometheus configuration of the compose
// stack (prometheus/), and, at the repository root, docker-compose.yml with
// the full distributed stack (Redis, MinIO, workers, the serve dashboard,
// Jaeger and Prometheus).
//
// The package has no Go API. Its tests load those files with the same
// parsers the tools use (compose-go for the compose file, a YAML decoder for
// the manifests and prometheus.yml), build the binary with the Dockerfile's
// own go build line, and check what a user would trip over: unpinned
// images, services wired to the wrong host, port or credentials, ports open
// beyond loopback, Prometheus scraping a port nothing listens on, misspelled
// environment variables, OTEL_* settings the binary rejects, a container
// command that is not a real subcommand, links in the usage notes that lead
// nowhere, and a binary that would not run on a distroless base.
package deployments
