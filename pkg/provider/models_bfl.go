package provider

// bflModels are the models served by the bfl adapter.
func bflModels() []Model { return nil }
