"""Loading a model from a checkpoint: the file validated, then the weights put on the device."""

from __future__ import annotations

from rnncli.data.text import Tokenizer
from rnncli.kernels.device import backend
from rnncli.model.model import Model
from rnncli.model.params import Params
from rnncli.store import validate


def load_model(path: str, device: str = "auto"):
    """(Model with the checkpoint's best weights on `device`, Tokenizer, metadata with configs
    decoded), after validate.py has checked every setting, the vocabulary and every tensor."""
    K = backend(device)  # before reading the file: a missing GPU is named first
    contents, tensors = validate.load(path)
    meta = dict(contents.meta, model=contents.model, train=contents.train)
    return Model(Params(contents.model).load(tensors), K), Tokenizer.from_json(contents.tokenizer), meta
