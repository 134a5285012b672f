package provider

// hostedModels lists the models reached over the network. Filled in by the
// provider adapters issue; kept separate from the simulator's profiles.
func hostedModels() []Model { return nil }
