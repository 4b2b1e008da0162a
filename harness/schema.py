"""The harness's name for :mod:`vireid.common.schema` (typed dataclasses from YAML mappings,
``ConfigError``), which lives in the bottom layer so that methods/ validates its own options and
loss blocks with the same converter."""
from vireid.common.schema import ConfigError, build, flatten, shown, to_dict

__all__ = ["ConfigError", "build", "flatten", "shown", "to_dict"]
