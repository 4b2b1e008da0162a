"""vireid-bench's bottom layer: what datasets/, methods/ and harness/ all use, importing none of them.

``registry`` (one registry mechanism and the plugins that add to it), ``schema`` (typed,
validated dataclasses from YAML mappings; ``ConfigError``) and ``io`` (atomic file writes).
Kept free of heavy imports.
"""
