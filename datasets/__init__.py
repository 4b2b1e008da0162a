"""vireid-bench's dataset layer: adapters, manifests, synthetic data, cache, samplers, transforms.

The top-level name ``datasets`` is also taken by the PyPI package of that name;
:data:`VIREID_PACKAGE` lets callers and tests check that they imported this one. Kept free
of heavy imports (torch, pandas) so that ``import vireid.datasets`` stays cheap.
"""

VIREID_PACKAGE = True
