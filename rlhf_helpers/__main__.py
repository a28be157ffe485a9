"""Command line: the stages (``python -m rlhf_helpers sft reward ppo ...``, :mod:`rlhf_helpers.stages`),
``... data check|convert ...``, ``... course``, ``... seeds`` and ``... links``."""

from __future__ import annotations

import sys

USAGE = """usage: python -m rlhf_helpers COMMAND ...

commands:
  STAGE [STAGE ...] [--profile P] [--set k=v]   run stages as the notebooks do: prepare, sft, qlora, reward,
                                                ppo, dpo, evaluate (--help after a stage lists every setting);
                                                several processes: accelerate launch -m rlhf_helpers STAGE ...
  data check PATH [--map prompt=question,...]   detect the format, count records, print the validation report
  data convert PATH OUT.jsonl [--map ...]       write canonical records (atomically)
  course [--profile tiny] [--only 00,01]        execute the notebooks in order, results under outputs/
  solutions [--only 05]                         build missing stages, execute notebooks/solutions/, check that
                                                the course's artifacts are unchanged
  seeds [--seeds 0,1,2] [--collect-only]        notebooks 01-05 for more seeds; results/seeds.csv
  links [--check]                               write colab_links.REPO into the install cells and badges
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    from .stages import STAGES

    if command in STAGES:
        from .stages import cli

        return cli(argv)
    if command == "data":
        from .data_prep import cli
    elif command == "course":
        from .runner import cli
    elif command == "solutions":
        from .runner import cli as course_cli

        return course_cli(rest, solutions=True)
    elif command == "seeds":
        from .seeds import cli
    elif command == "links":
        from .colab_links import cli
    else:
        print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return cli(rest)


if __name__ == "__main__":
    sys.exit(main())
