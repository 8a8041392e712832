"""Saving and sharing: ``save_pretrained``, ``push_to_hub``, the model card.

Owns writing a built model as a folder (:mod:`._save`), its model card (:mod:`._card`),
the one-commit push with its time bound and cleanup (:mod:`._hub`, :mod:`._push_guard`).
Reading a saved model back is :mod:`zoo_core.saved`. It may import :mod:`zoo_core.build`
and every part below it, never :mod:`zoo_core.train`, :mod:`zoo_core.rank` or the CLI.
"""
