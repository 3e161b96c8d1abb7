"""`python -m cogumi <command>`: setup, pipeline, artifacts list|show|diff, route."""

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


def _unpack(args) -> None:
    from pathlib import Path

    from cogumi.compress.zstd_pack import unpack_file

    packed = Path(args.packed)
    target = Path(args.output) if args.output else packed.with_name(packed.name.removesuffix(".zst"))
    unpack_file(packed, target)
    logging.getLogger("cogumi").info("unpacked %s -> %s (sha256 verified)", packed, target)


def _chat(args) -> None:
    from cogumi.serve.chat_cli import run_chat

    run_chat(args.url, args.key, args.session, args.max_tokens, args.serve, args.model)


def _publish(args) -> None:
    from cogumi.serve.publish import publish

    publish(args.ref, args.repo, private=args.private, token=args.token, revision=args.revision)


def _route(args) -> None:
    from cogumi.router.cli import print_decision, route_command

    print_decision(route_command(args.text, args.router, args.mode, args.confidence, args.modifier, args.teacher,
                                 args.escalation, args.threshold))


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

    unpack = commands.add_parser("unpack", help="stream-unpack a .gguf.zst pack, verifying its sha256")
    unpack.add_argument("packed", help="a packed file (next to it: .dict and .json)")
    unpack.add_argument("-o", "--output", help="where to write (default: the name without .zst)")
    unpack.set_defaults(func=_unpack)

    chat = commands.add_parser("chat", help="chat with the served model in the terminal (streaming)")
    chat.add_argument("--url", default="http://127.0.0.1:8000/v1", help="the API of a running serve.py")
    chat.add_argument("--serve", action="store_true", help="start serve.py on a free loopback port instead")
    chat.add_argument("--key", help="API key (default: $COGUMI_API_KEY)")
    chat.add_argument("--model", help="model to ask (default: the server's routing)")
    chat.add_argument("--session", help="a saved session to continue")
    chat.add_argument("--max-tokens", type=int, default=256)
    chat.set_defaults(func=_chat)

    publish = commands.add_parser("publish", help="upload a GGUF artifact (+ Modelfile, manifest) to the HF Hub")
    publish.add_argument("ref", help="artifact ref (latest:gguf, latest:modelfile, <stage>/<name>) or a folder")
    publish.add_argument("--repo", required=True, help="hub repo id, e.g. you/cogumi-smollm2-gguf")
    publish.add_argument("--private", action="store_true")
    publish.add_argument("--revision", default=None, help="branch to upload to")
    publish.add_argument("--token", default=None, help="HF token (default: $HF_TOKEN or the saved login)")
    publish.set_defaults(func=_publish)
    route = commands.add_parser("route", help="print the router's decision for a query as JSON")
    route.add_argument("text", help="the user's query")
    route.add_argument("--router", default="latest:router", help="router artifact ref or folder")
    route.add_argument("--mode", default="balanced", choices=["speed", "balanced", "quality"])
    route.add_argument("--confidence", type=float, help="the base's calibrated confidence in its answer, if answered")
    route.add_argument("--threshold", type=float, help="override the router's threshold")
    route.add_argument("--modifier", action="append", help="a domain with a promoted modifier (repeatable)")
    route.add_argument("--teacher", action="store_true", help="a teacher endpoint is available")
    route.add_argument("--escalation", help="also score the text with this escalation artifact (latest:escalation)")
    route.set_defaults(func=_route)
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
