"""`python -m cogumi <command>`: setup, pipeline, artifacts list|show|diff."""

import argparse
import logging
import sys

from cogumi.errors import CogumiError


def _setup(args) -> None:
    from cogumi.assets import setup_all

    setup_all()


def _pipeline(args) -> None:
    from cogumi.pipeline import run_pipeline

    run_pipeline(args.experiment, args.overrides, dry_run=args.dry_run)


def _artifacts(args) -> None:
    from cogumi.artifact_cli import diff_artifacts, list_artifacts, show_artifact

    {"list": lambda: list_artifacts(args.stage), "show": lambda: show_artifact(args.ref),
     "diff": lambda: diff_artifacts(args.ref, args.other)}[args.action]()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cogumi", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("setup", help="prepare the offline assets (model, converter, data)").set_defaults(func=_setup)

    pipeline = commands.add_parser("pipeline", help="run an experiment preset's stages in order, resumably")
    pipeline.add_argument("--experiment", default="embedded", help="a preset in experiments/")
    pipeline.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    pipeline.add_argument("overrides", nargs="*", help="Hydra overrides added to every step")
    pipeline.set_defaults(func=_pipeline)

    artifacts = commands.add_parser("artifacts", help="list, show or compare artifacts")
    artifacts.add_argument("action", choices=["list", "show", "diff"])
    artifacts.add_argument("ref", nargs="?", help="stage to list, or an artifact ref (latest:<stage>, <stage>/<name>, path)")
    artifacts.add_argument("other", nargs="?", help="second artifact for diff")
    artifacts.set_defaults(func=_artifacts, stage=None)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s",
                        datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    if args.command == "artifacts" and args.action == "list":
        args.stage = args.ref
    try:
        args.func(args)
    except CogumiError as err:
        print(f"cogumi {args.command}: {err}", file=sys.stderr)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
