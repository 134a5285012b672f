package provider

// openaiModels are the models served by the openai adapter.
func openaiModels() []Model { return nil }
