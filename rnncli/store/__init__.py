"""The store layer: checkpoints. The safetensors file itself (`checkpoint`), what a file must hold
to be used (`validate`), and loading a model from one (`load`).

Imports: rnncli.model, rnncli.data, rnncli.kernels, rnncli.base."""
