"""The Python API: typed settings and results, `load` and `Model`, `train` and `Run`. The CLI is a
shell over it.

Imports: rnncli.run, rnncli.store, rnncli.model, rnncli.data, rnncli.kernels, rnncli.base."""
