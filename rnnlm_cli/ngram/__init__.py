"""The n-gram backend: counting, smoothing, the query structure, ARPA in and out."""
