"""rnncli: recurrent language models (RNN, GRU, LSTM) trained and used from the command line and
from Python.

    >>> import rnncli
    >>> model = rnncli.load("rnncli.safetensors")
    >>> model.generate("ROMEO:", 200, temperature=0.8)
    >>> model.score("To be, or not to be").bits_per_char

`load` gives a Model (generate, stream, score, probe); `train` gives a Run (iterate it for its
events). Settings and results are typed, frozen dataclasses: ModelSettings, TrainSettings,
RunOptions, Score, Probe. Every error is an RnncliError, its message the line the CLI prints.
`import rnncli` loads nothing heavy: numba comes in when a model first runs.
"""

__version__ = "0.1.0"

# name -> module that defines it (imported when the name is first used)
_EXPORTS = {
    "load": "rnncli.api.model",
    "Model": "rnncli.api.model",
    "Generated": "rnncli.api.model",
    "train": "rnncli.api.training",
    "Run": "rnncli.api.training",
    "StepEvent": "rnncli.api.training",
    "DoneEvent": "rnncli.api.training",
    "ModelSettings": "rnncli.model.settings",
    "TrainSettings": "rnncli.model.settings",
    "RunOptions": "rnncli.run.options",
    "ModelConfig": "rnncli.model.config",
    "TrainConfig": "rnncli.model.config",
    "Score": "rnncli.run.evaluate",
    "Probe": "rnncli.run.probe",
    "RnncliError": "rnncli.base.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rnncli' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
