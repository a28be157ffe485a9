"""The first cell of every notebook: pick the profile, seed everything, print what we run on."""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import replace
from pathlib import Path

from .core.artifacts import Paths
from .core.config import SETTINGS_ENV, Profile, get_profile, resolve_profile_name
from .core.hub import hub_map
from .core.loading import precision
from .runner import build_missing

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


DRIVE_MOUNT = "/content/drive"
DRIVE_FOLDER = "MyDrive/rlhf-course"  # under the mount: one outputs folder per profile, <profile>/outputs


def on_colab() -> bool:
    """True inside a Google Colab kernel."""
    return "google.colab" in sys.modules


def drive_outputs(profile: str) -> Path:
    """The output root on Google Drive for ``profile``: a profile's stages never meet another's."""
    return Path(DRIVE_MOUNT) / DRIVE_FOLDER / profile / "outputs"


def keep_on_drive(profile: str, folder: str | Path | None = None) -> Path | None:
    """On Colab, mount Google Drive and make ``folder`` (default :func:`drive_outputs`) the output root
    (``$RLHF_OUTPUT_DIR``, which the notebooks this kernel runs inherit), so that the next notebook -- a fresh Colab
    machine -- finds the stages this one builds. Returns the folder; ``None`` (and says why) when not on Colab, when
    ``$RLHF_OUTPUT_DIR`` is already set (it wins), or when Drive could not be mounted or its folder written (the
    outputs then stay on this machine)."""
    if not on_colab():
        return None
    if os.environ.get("RLHF_OUTPUT_DIR"):
        print(f"outputs : $RLHF_OUTPUT_DIR={os.environ['RLHF_OUTPUT_DIR']} (set; Google Drive not used)")
        return None
    from google.colab import drive

    try:
        drive.mount(DRIVE_MOUNT)
        root = Paths(root=folder or drive_outputs(profile)).check_root()
    except Exception as err:  # declined, no Drive, a full or read-only folder: the course still runs, on this machine
        print(f"Google Drive not used ({err}): outputs stay on this Colab machine and go with it.")
        return None
    os.environ["RLHF_OUTPUT_DIR"] = str(root)
    return root


def start(profile: str | None = None, verbose: bool = True, drive: bool = False) -> Profile:
    """Resolve the profile (argument > $RLHF_PROFILE > hardware), seed, and print the environment.

    ``drive=True`` keeps the outputs on Google Drive when running on Colab (:func:`keep_on_drive`); elsewhere
    it does nothing.

    ``$RLHF_TORCH_THREADS`` sets torch's CPU threads: set it to 1 when several notebooks share one machine
    (a workshop server), where each process spinning a thread per core slows all of them down ~5x. Unset, the
    tiny profile uses :data:`TINY_THREADS` (2 trains the tiny model 1.7x faster than 1; more barely helps, and a
    fixed count keeps the results comparable across machines); other profiles keep torch's default.
    """
    import torch
    from transformers import set_seed

    if drive:
        keep_on_drive(resolve_profile_name(profile))
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
        print(f"outputs : {prof.paths.root}" + ("   (lost with this Colab machine: start(drive=True) keeps them)"
                                                 if on_colab() and not str(prof.paths.root).startswith(DRIVE_MOUNT) else ""))
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


EXERCISES = "exercises"  # under the output root: one folder per exercise, e.g. outputs/exercises/05.1


def exercise_profile(profile: Profile, exercise: str) -> Profile:
    """``profile`` for one exercise (``"05.1"``: notebook 05, exercise 1): the same settings, but everything it
    writes (checkpoints, results, plots, label files) goes under ``<output root>/exercises/<exercise>/``, while
    the stages it does not make itself are read from the course's output root (:class:`Paths` ``reads_from``).
    A retrained SFT model or reward model of an exercise never replaces the one the later notebooks load."""
    if not re.fullmatch(r"\d\d\.\d+", exercise):
        raise ValueError(f"exercise {exercise!r}: expected 'NN.k', the notebook's number and the exercise's, e.g. '05.1'")
    root = profile.paths.root / EXERCISES / exercise
    print(f"Exercise {exercise} writes to {root} (the course's stages are read from {profile.paths.root}).")
    return replace(profile, paths=Paths(root, profile.paths.data_dir, reads_from=profile.paths.root))


def ensure_stages(profile: Profile, *stages: str) -> None:
    """In each notebook's setup cell (its second code cell), after :func:`start`: check that the earlier ``stages`` (and what they need) have finished runs in the
    output root; run the notebook of each missing one (a fresh Colab machine with nothing on Drive), with a
    progress bar and a time estimate. See :func:`rlhf_helpers.runner.build_missing`."""
    build_missing(profile, stages)
