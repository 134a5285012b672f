package telemetry

import (
	"go.opentelemetry.io/otel/attribute"
)

// likeness's span attribute keys. Every attribute this package makes comes
// from a helper below taking one scalar: none accepts a payload, a map or
// bytes, so a prompt's parameters, an image or a key cannot become an
// attribute by accident.
const (
	keyRunID    = attribute.Key("likeness.run.id")
	keyTaskID   = attribute.Key("likeness.task.id")
	keyModel    = attribute.Key("likeness.model")
	keyProvider = attribute.Key("likeness.provider")
	keyAttempt  = attribute.Key("likeness.attempt")
	keyCostUSD  = attribute.Key("likeness.cost_usd")
	keyClass    = attribute.Key("likeness.class")
	keyWait     = attribute.Key("likeness.wait_seconds")
	keyTaskType = attribute.Key("likeness.task.type")
	keyRunTasks = attribute.Key("likeness.run.tasks")
	keyPerTask  = attribute.Key("likeness.run.trace_per_task")

	// gen_ai.* from the OpenTelemetry GenAI conventions (development
	// status, not in the semconv package this module pins).
	keyGenAIOperation = attribute.Key("gen_ai.operation.name")
	keyGenAIProvider  = attribute.Key("gen_ai.provider.name")
	keyGenAIModel     = attribute.Key("gen_ai.request.model")
	keyGenAIResponse  = attribute.Key("gen_ai.response.id")
)

// RunID is likeness.run.id.
func RunID(id string) attribute.KeyValue { return keyRunID.String(id) }

// TaskID is likeness.task.id, the task's id within its run.
func TaskID(id string) attribute.KeyValue { return keyTaskID.String(id) }

// Model is likeness.model, the model's id in the spec.
func Model(id string) attribute.KeyValue { return keyModel.String(id) }

// Provider is likeness.provider, the adapter name ("replicate", "sim").
func Provider(name string) attribute.KeyValue { return keyProvider.String(name) }

// Attempt is likeness.attempt, counting from 1. Middleware sets it from
// asynq's retry count; set it again to count attempts the worker's way.
func Attempt(n int) attribute.KeyValue { return keyAttempt.Int(n) }

// CostUSD is likeness.cost_usd, what an attempt cost.
func CostUSD(usd float64) attribute.KeyValue { return keyCostUSD.Float64(usd) }

// Class is likeness.class, a failure class from pkg/provider ("rate",
// "transient", ...).
func Class(c string) attribute.KeyValue { return keyClass.String(c) }

// GenAI returns the gen_ai.* attributes of a provider call: the operation
// (generate_content: the conventions have no image-specific operation), the
// provider and the provider's model name.
func GenAI(provider, model string) []attribute.KeyValue {
	return []attribute.KeyValue{
		keyGenAIOperation.String("generate_content"),
		keyGenAIProvider.String(provider),
		keyGenAIModel.String(model),
	}
}

// ResponseID is gen_ai.response.id, the provider's id for a prediction or
// request, for finding it in the provider's dashboard.
func ResponseID(id string) attribute.KeyValue { return keyGenAIResponse.String(id) }
