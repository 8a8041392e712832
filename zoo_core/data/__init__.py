"""Image-folder data: the one safe walker, splits, loading, transforms, embedded tasks.

Owns the scan of image folders (:mod:`._scan`), ``stratified_split``, image loading and
timm transforms (:mod:`._data`) and the embedded target tasks written as ImageFolders
(:mod:`._embedded`). It may import :mod:`zoo_core.weights` (for the cache folder) and
the top-level modules, nothing else of zoo_core.
"""
