"""Loading a model from a checkpoint: the file validated, then the weights put on the device."""

from __future__ import annotations

from rnncli.base.errors import RnncliError
from rnncli.data.text import Tokenizer
from rnncli.kernels import formats
from rnncli.kernels.device import backend
from rnncli.model.model import Model
from rnncli.model.params import Params
from rnncli.store import validate


def load_model(path: str, device: str = "auto", weights: str = "f32"):
    """(Model with the checkpoint's best weights on `device`, Tokenizer, metadata with configs
    decoded), after validate.py has checked every setting, the vocabulary and every tensor.
    weights: the format generation reads the large matrices in (kernels/formats.py); for bf16 and
    int8 they are round-tripped through it here, once, so that scoring this model reports the loss
    of the model the CPU decoder runs. The GPU decoder reads float32 only."""
    formats.check(weights)
    K = backend(device)  # before reading the file: a missing GPU is named first
    if weights != "f32" and K.NAME != "cpu":
        raise RnncliError(
            f"--weights {weights}: the GPU decoder reads float32 weights only; "
            "use --device cpu, or --weights f32"
        )
    contents, tensors = validate.load(path)
    meta = dict(contents.meta, model=contents.model, train=contents.train)
    tensors = formats.round_trip_tensors(tensors, contents.model.layers, weights)
    model = Model(Params(contents.model).load(tensors), K, weights)
    return model, Tokenizer.from_json(contents.tokenizer), meta
