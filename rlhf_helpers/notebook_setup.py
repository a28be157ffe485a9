"""The first cell of every notebook: pick the profile, seed everything, print what we run on."""

from __future__ import annotations

import os
import platform

from .core.config import SETTINGS_ENV, Profile, get_profile
from .core.hub import hub_map
from .core.loading import precision

TINY_THREADS = 2  # torch threads of the tiny profile (fewer where the machine has fewer): the course's runs use 2
LIBRARIES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "bitsandbytes", "evaluate")


def library_versions() -> dict[str, str]:
    """Installed version of each library the course uses ("missing" if absent), read from the package metadata:
    importing them all (trl, evaluate...) would cost a notebook that uses few of them several seconds."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    return versions


def device_name() -> str:
    """'cuda (<GPU name>)', 'mps' or 'cpu'."""
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def start(profile: str | None = None, verbose: bool = True) -> Profile:
    """Resolve the profile (argument > $RLHF_PROFILE > hardware), seed, and print the environment.

    ``$RLHF_TORCH_THREADS`` sets torch's CPU threads: set it to 1 when several notebooks share one machine
    (a workshop server), where each process spinning a thread per core slows all of them down ~5x. Unset, the
    tiny profile uses :data:`TINY_THREADS` (2 trains the tiny model 1.7x faster than 1; more barely helps, and a
    fixed count keeps the results comparable across machines); other profiles keep torch's default.
    """
    import torch
    from transformers import set_seed

    prof = get_profile(profile)
    threads = os.environ.get("RLHF_TORCH_THREADS")
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"RLHF_TORCH_THREADS={threads!r}: expected a positive whole number")
        torch.set_num_threads(int(threads))
    elif prof.name == "tiny":  # pinned: the thread count decides the order of float sums, so the numbers
        torch.set_num_threads(min(TINY_THREADS, torch.get_num_threads()))
    set_seed(prof.seed)  # Python, NumPy and torch (CPU and CUDA)
    mapped = hub_map()  # read here, so that a wrong $RLHF_HUB_MAP entry fails in the first cell
    if verbose:
        versions = library_versions()
        print(f"profile : {prof.name}   (set RLHF_PROFILE=tiny|colab|cpu to change)")
        print(f"device  : {device_name()}   (torch threads: {torch.get_num_threads()})")
        print(f"precision: {precision().reason}   (per model family where it matters: core.loading.precision)")
        print(f"seed    : {prof.seed}   (set RLHF_SEED to change; `make seeds` runs 0, 1 and 2)")
        print(f"outputs : {prof.paths.root}")
        if os.environ.get(SETTINGS_ENV, "").strip():  # already applied by get_profile
            print(f"settings: {os.environ[SETTINGS_ENV].strip()}   (${SETTINGS_ENV})")
        for name, local in mapped.items():
            print(f"local   : {name} -> {local}   ($RLHF_HUB_MAP)")
        print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return prof


CHECKS_ENV = "RLHF_CHECK_CLAIMS"


def check(ok: bool, message: str) -> None:
    """A sentence of the notebook checked against this run: ``AssertionError(message)`` when ``ok`` is false.

    ``RLHF_CHECK_CLAIMS=0`` prints the failed check instead of stopping. It is meant for smoke runs of a profile's
    code path (random stand-ins of the Hub models, shrunk steps: ``tests/test_notebooks.py``), whose numbers mean
    nothing; never for a run whose numbers are read.
    """
    if ok:
        return
    if os.environ.get(CHECKS_ENV, "").strip() == "0":
        print(f"NOT CHECKED (${CHECKS_ENV}=0): {message}")
        return
    raise AssertionError(message)
