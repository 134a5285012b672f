package provider

// arkModels are the models served by the ark adapter.
func arkModels() []Model { return nil }
