"""rnncli: recurrent language models (RNN, GRU, LSTM) trained and used from the command line."""

__version__ = "0.1.0"
