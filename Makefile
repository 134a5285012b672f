# Thin wrappers; scripts/test.sh is the real test command (it starts Redis and MinIO).
.PHONY: test build vet

test:
	scripts/test.sh

build:
	go build ./...

vet:
	go vet ./...
