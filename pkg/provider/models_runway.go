package provider

// runwayModels are the models served by the runway adapter.
func runwayModels() []Model { return nil }
