"""The run layer: what each command does, as library calls. Training (`train`, `train_state`,
`runs`, `distributed`, `curve`), scoring (`evaluate`), generation (`sample`), looking inside
(`probe`, `neurons`) and measuring speed (`bench`, `bench_torch`).

Imports: rnncli.store, rnncli.model, rnncli.data, rnncli.kernels, rnncli.base."""
