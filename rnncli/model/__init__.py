"""The model layer: what a network is and how it learns. Its settings (`config`), parameters
(`params`), the network over a kernel backend (`model`), the optimizer (`optim`), one training step
(`step`) and the recipe that chooses settings for a corpus, a budget and a machine (`recipe`).

Imports: rnncli.data, rnncli.kernels, rnncli.base."""
