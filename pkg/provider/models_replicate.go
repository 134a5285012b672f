package provider

// replicateModels are the models served by the replicate adapter.
func replicateModels() []Model { return nil }
