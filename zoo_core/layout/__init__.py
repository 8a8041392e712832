"""A model's shape before its weights: keyword arguments, meta construction, stages.

Owns the model keyword arguments a build accepts and records (``in_chans``,
``img_size``), construction with parameters on the ``meta`` device, resolution stages
(``stage_table``, ``resolution_stages``) and which parameters ``partial:K`` trains.
It may import the top-level modules only; strategies and the builder import it.
"""
