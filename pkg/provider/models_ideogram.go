package provider

// ideogramModels are the models served by the ideogram adapter.
func ideogramModels() []Model { return nil }
