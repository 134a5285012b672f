package provider

import "slices"

// hostedModels lists the models reached over the network, one file per
// provider (models_<provider>.go).
func hostedModels() []Model {
	return slices.Concat(replicateModels(), openaiModels(), bflModels(), runwayModels(), ideogramModels(), arkModels())
}
