"""rnnlm: n-gram and recurrent language models from the command line."""

__version__ = "0.1.0"
