"""Moved to `cogumi.models.fidelity` (importable by compress and evaluate alike); kept for old imports."""

from cogumi.models.fidelity import (GGUFCausalLM, HFCausalLM, divergence, fidelity, mean_nll, open_scorer,  # noqa: F401
                                    prompt_replies, scoring_windows)
