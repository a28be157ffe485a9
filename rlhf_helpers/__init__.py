"""rlhf_helpers: the tested helper package behind the RLHF course notebooks.

Import is cheap on purpose (no torch/transformers at import time); each stage lives in its own module:
``config`` (profiles and paths), ``env`` (notebook start-up), ``course_data`` and ``judge`` (the course's
dataset and its gold judge), ``data`` (loading and validating datasets), ``models``, ``generation``,
``sft``, ``reward``, ``ppo``, ``evaluation`` and ``notebooks`` (the notebook runner).
"""

from .core.artifacts import MissingStageError, Paths
from .core.config import Profile, get_profile

__all__ = ["MissingStageError", "Paths", "Profile", "get_profile"]
__version__ = "0.1.0"
