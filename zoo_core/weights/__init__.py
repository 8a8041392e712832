"""Weights: where they come from and proof that they are what they claim to be.

Owns the sources of a weights file (local file, URL, ``pkg:``), the one resumable
download, zoo_core's download cache and its sidecars, sha256 digests, the structural
check of a safetensors header, pickle -> safetensors conversion, offline detection,
what may be loaded into a model and how tensors are fitted to ``in_chans``/``img_size``.
The lowest part: it may import only :mod:`zoo_core.errors`, :mod:`zoo_core._specs`
and :mod:`zoo_core._safefs`.
"""
