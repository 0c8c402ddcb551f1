"""Building checkpoints (never needed to load one): the tiny test factory, the offline
tokenizer builder and, in :mod:`sn_interp.checkpoints.micro`, the micro/mini training recipes
and their model cards.

Load-time code lives in :mod:`sn_interp.models`; this package may import it (family
declarations, the registry, :func:`~sn_interp.models.wrap`), never the reverse, except that
:func:`sn_interp.models.resolve` builds a ``tiny-*`` checkpoint on first use through
:func:`sn_interp.checkpoints.tiny.tiny_path`. Neither package imports ``probes``,
``analyses`` or the package root.
"""
